#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.core.management import execute_from_command_line

    from controlplane.startup import exit_on_startup_error

    exit_on_startup_error(lambda: execute_from_command_line(sys.argv))


if __name__ == "__main__":
    main()
