variable "project" {
  description = "The Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Where the service, the job, the queues, the database and the scheduler job live."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "The example's image (example/Dockerfile), e.g. REGION-docker.pkg.dev/PROJECT/demo/demo. The service and the worker job both run it."
  type        = string
}

variable "service" {
  description = "The Cloud Run service's name."
  type        = string
  default     = "demo"
}

variable "job" {
  description = "The Cloud Run job that runs the tasks of the cluster \"long\": Q_CLUSTER's job (CLOUD_TASKS_JOB)."
  type        = string
  default     = "demo-worker"
}

variable "database_tier" {
  description = "The Cloud SQL machine tier."
  type        = string
  default     = "db-f1-micro"
}

variable "admin_password" {
  description = "The admin login's password (user admin); null: no login is created."
  type        = string
  default     = null
  sensitive   = true
}

variable "deletion_protection" {
  description = "Keep terraform destroy from deleting the database, the service and the job."
  type        = bool
  default     = true
}
