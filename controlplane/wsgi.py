import os

from django.core.wsgi import get_wsgi_application

from controlplane.startup import exit_on_startup_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

# Exit code 3 tells gunicorn's arbiter the worker cannot boot, so it stops instead of looping.
application = exit_on_startup_error(get_wsgi_application, exit_code=3)
