import os

from django.core.asgi import get_asgi_application

from controlplane.startup import exit_on_startup_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

application = exit_on_startup_error(get_asgi_application, exit_code=3)
