output "name" {
  description = "Name of the HorizontalPodAutoscaler."
  value       = kubernetes_horizontal_pod_autoscaler_v2.this.metadata[0].name
}

output "namespace" {
  description = "Namespace of the HorizontalPodAutoscaler."
  value       = kubernetes_horizontal_pod_autoscaler_v2.this.metadata[0].namespace
}

output "min_replicas" {
  description = "Lower bound on the number of pods."
  value       = kubernetes_horizontal_pod_autoscaler_v2.this.spec[0].min_replicas
}

output "max_replicas" {
  description = "Upper bound on the number of pods."
  value       = kubernetes_horizontal_pod_autoscaler_v2.this.spec[0].max_replicas
}
