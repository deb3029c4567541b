from django.apps import AppConfig


class CloudTasksConfig(AppConfig):
    name = "django_q_cloudtasks"
    verbose_name = "Django Q on Cloud Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the apps are: these modules use the models.
        from . import checks  # noqa: F401  (registers the system checks)
        from .cloud_logging import log_somewhere_by_default
        from .receiver.execution import quiet_django_q

        quiet_django_q()
        log_somewhere_by_default()
