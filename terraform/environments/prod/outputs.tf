output "search_hpa" {
  description = "Bounds of the search HPA."
  value = {
    min_replicas = module.search_hpa.min_replicas
    max_replicas = module.search_hpa.max_replicas
  }
}

output "orders_db_endpoint" {
  description = "host:port of the orders database."
  value       = module.orders_db.endpoint
}

output "artifacts_bucket" {
  description = "Name of the artifacts bucket."
  value       = module.artifacts_bucket.bucket
}
