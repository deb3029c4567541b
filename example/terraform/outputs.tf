output "service_url" {
  description = "The example's page; its receiver is at /_tasks/."
  value       = google_cloud_run_v2_service.demo.uri
}

output "worker_job" {
  description = "The Cloud Run job the tasks of the cluster \"long\" run in."
  value       = google_cloud_run_v2_job.worker.id
}

output "tasks_invoker" {
  description = "The service account Cloud Tasks and Cloud Scheduler sign their requests as."
  value       = google_service_account.tasks_invoker.email
}

output "runtime" {
  description = "The service account the service and the job's executions run as."
  value       = google_service_account.runtime.email
}
