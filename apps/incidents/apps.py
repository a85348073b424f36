from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "apps.incidents"
    label = "incidents"
    verbose_name = "Incident response"

    def ready(self) -> None:
        # Imports in ready(), not at the top: the selectors need the app registry.
        from apps.core.metrics import register_scrape_collector
        from apps.incidents.metrics import collect_open

        register_scrape_collector("incidents_open", collect_open)
