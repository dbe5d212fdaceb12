# Horizontal pod autoscalers managed here rather than in the service's chart.

# search: the chart in helm-charts/search keeps autoscaling.enabled false, so this
# is the only HPA for the "search" Deployment in namespace "prod".
module "search_hpa" {
  source = "../../modules/hpa"

  name      = "search"
  namespace = "prod"
  # floor agreed with the search team
  min_replicas           = 2
  max_replicas           = 24
  target_cpu_utilization = 70
}
