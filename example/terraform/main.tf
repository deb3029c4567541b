# The example's whole production set-up: the Cloud Run service (the web app and the
# receiver), the Cloud Run job that runs the tasks of the cluster "long", their queues as
# `manage.py cloudtasks_setup` makes them, the Cloud Scheduler job that calls the tick, a
# Cloud SQL database both share, the secrets, and the service accounts with their roles.
# The same steps with gcloud: README.md, "The example on Cloud Run".

locals {
  apis = [
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
  ]
  # What the runtime account may do with tasks: create them (and as tasks-invoker), delete
  # them (cancel(), a job execution's own once done), run them now and read the queues
  # (the admin's queues page, cloudtasks_monitor).
  runtime_roles = [
    "roles/cloudsql.client",
    "roles/cloudtasks.enqueuer",
    "roles/cloudtasks.taskDeleter",
    "roles/cloudtasks.taskRunner",
    "roles/cloudtasks.viewer",
  ]
  # The same settings in the service and in the job's executions (demo/settings.py).
  database_host = "/cloudsql/${google_sql_database_instance.demo.connection_name}"
  env = {
    CLOUD_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    CLOUD_TASKS_JOB             = var.job
    DATABASE_NAME               = google_sql_database.demo.name
    DATABASE_HOST               = local.database_host
    DATABASE_USER               = google_sql_user.demo.name
  }
  secret_env = merge(
    {
      DJANGO_SECRET_KEY = google_secret_manager_secret.django_secret_key.secret_id
      DATABASE_PASSWORD = google_secret_manager_secret.database_password.secret_id
    },
    var.admin_password == null ? {} : {
      DJANGO_SUPERUSER_PASSWORD = google_secret_manager_secret.admin_password[0].secret_id
    },
  )
  admin_env = var.admin_password == null ? {} : {
    DJANGO_SUPERUSER_USERNAME = "admin"
    DJANGO_SUPERUSER_EMAIL    = "admin@example.com"
  }
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

# Service accounts: Cloud Tasks and Cloud Scheduler sign their requests as tasks-invoker;
# the service and the job's executions run as the runtime account.

resource "google_service_account" "tasks_invoker" {
  account_id   = "tasks-invoker"
  display_name = "Cloud Tasks invoker"
}

resource "google_service_account" "runtime" {
  account_id   = "${var.service}-runtime"
  display_name = "${var.service} runtime"
}

resource "google_project_iam_member" "runtime" {
  for_each = toset(local.runtime_roles)
  project  = var.project
  role     = each.value
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

# Tasks are created with tasks-invoker's OIDC token: the runtime account acts as it.
resource "google_service_account_iam_member" "runtime_acts_as_tasks_invoker" {
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime.email}"
}

# The receiver starts job executions with overrides, which run as the runtime account.
resource "google_service_account_iam_member" "runtime_acts_as_itself" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_cloud_run_v2_job_iam_member" "runtime_runs_the_worker" {
  name     = google_cloud_run_v2_job.worker.name
  location = var.region
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_cloud_run_v2_service_iam_member" "tasks_invoker_calls_the_service" {
  name     = google_cloud_run_v2_service.demo.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}

resource "google_cloud_run_v2_service_iam_member" "the_page_is_public" {
  name     = google_cloud_run_v2_service.demo.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Secrets: the service and the job sign and check task packages with the same key.

resource "random_password" "django_secret_key" {
  length  = 50
  special = false
}

resource "random_password" "database" {
  length  = 32
  special = false
}

resource "google_secret_manager_secret" "django_secret_key" {
  secret_id = "${var.service}-django-secret-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "django_secret_key" {
  secret      = google_secret_manager_secret.django_secret_key.id
  secret_data = random_password.django_secret_key.result
}

resource "google_secret_manager_secret" "database_password" {
  secret_id = "${var.service}-database-password"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "database_password" {
  secret      = google_secret_manager_secret.database_password.id
  secret_data = random_password.database.result
}

resource "google_secret_manager_secret" "admin_password" {
  count     = var.admin_password == null ? 0 : 1
  secret_id = "${var.service}-admin-password"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "admin_password" {
  count       = var.admin_password == null ? 0 : 1
  secret      = google_secret_manager_secret.admin_password[0].id
  secret_data = var.admin_password
}

resource "google_secret_manager_secret_iam_member" "runtime_reads" {
  for_each  = local.secret_env
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

# The database: results, receipts and the packages a job execution reads.

resource "google_sql_database_instance" "demo" {
  name                = var.service
  database_version    = "POSTGRES_16"
  region              = var.region
  deletion_protection = var.deletion_protection
  settings {
    tier = var.database_tier
  }
  depends_on = [google_project_service.apis]
}

resource "google_sql_database" "demo" {
  name     = var.service
  instance = google_sql_database_instance.demo.name
}

resource "google_sql_user" "demo" {
  name     = var.service
  instance = google_sql_database_instance.demo.name
  password = random_password.database.result
}

# The service: the web app, and the receiver Cloud Tasks delivers to. Its request timeout
# covers the dispatch deadline of the cluster "demo" (timeout 30 s + 15 s).

resource "google_cloud_run_v2_service" "demo" {
  name                = var.service
  location            = var.region
  deletion_protection = var.deletion_protection
  template {
    service_account                  = google_service_account.runtime.email
    timeout                          = "60s"
    max_instance_request_concurrency = 2
    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.demo.connection_name]
      }
    }
    containers {
      image = var.image
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
      dynamic "env" {
        for_each = merge(local.env, local.admin_env)
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
    }
  }
  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.runtime_reads,
    google_secret_manager_secret_version.django_secret_key,
    google_secret_manager_secret_version.database_password,
  ]
}

# The job: each task of the cluster "long" runs in an execution of it, started by the
# receiver with the task named in its environment. Its task timeout is the receiver's
# to set for each execution (the task's timeout + 60 s); this one is the cluster's.

resource "google_cloud_run_v2_job" "worker" {
  name                = var.job
  location            = var.region
  deletion_protection = var.deletion_protection
  template {
    task_count = 1
    template {
      service_account = google_service_account.runtime.email
      timeout         = "3660s"
      max_retries     = 3
      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [google_sql_database_instance.demo.connection_name]
        }
      }
      containers {
        image   = var.image
        command = ["python"]
        args    = ["manage.py", "cloudtasks_execute"]
        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
        dynamic "env" {
          # A job has no URL of its own: the chains and hooks it enqueues go to the service.
          for_each = merge(local.env, { RECEIVER_URL = "${google_cloud_run_v2_service.demo.uri}/_tasks/" })
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = local.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }
  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.runtime_reads,
    google_secret_manager_secret_version.django_secret_key,
    google_secret_manager_secret_version.database_password,
  ]
}

# The queues, as cloudtasks_setup makes them from demo/settings.py: Cloud Tasks' defaults
# but for the attempts, which django-q's max_attempts limits, and the cluster "long"'s
# queue_options.

resource "google_cloud_tasks_queue" "demo" {
  name     = "demo"
  location = var.region
  rate_limits {
    max_dispatches_per_second = 500
    max_concurrent_dispatches = 1000
  }
  retry_config {
    max_attempts       = -1
    min_backoff        = "0.100s"
    max_backoff        = "3600s"
    max_doublings      = 16
    max_retry_duration = "0s"
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue" "long" {
  name     = "long"
  location = var.region
  rate_limits {
    max_dispatches_per_second = 500
    max_concurrent_dispatches = 1000
  }
  retry_config {
    max_attempts       = -1
    min_backoff        = "1s"
    max_backoff        = "60s"
    max_doublings      = 16
    max_retry_duration = "0s"
  }
  depends_on = [google_project_service.apis]
}

# Schedules: the tick, every minute (README.md, "Schedules").

resource "google_cloud_scheduler_job" "tick" {
  name             = "${var.service}-tick"
  region           = var.region
  schedule         = "* * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"
  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.demo.uri}/_tasks/tick/"
    oidc_token {
      service_account_email = google_service_account.tasks_invoker.email
      audience              = google_cloud_run_v2_service.demo.uri
    }
  }
  depends_on = [google_project_service.apis]
}
