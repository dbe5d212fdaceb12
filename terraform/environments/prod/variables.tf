variable "aws_region" {
  description = "AWS region of the prod environment."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "EKS cluster the Kubernetes provider talks to."
  type        = string
  default     = "opsgate-prod"
}

variable "db_subnet_group_name" {
  description = "DB subnet group with the private database subnets of the prod VPC."
  type        = string
  default     = "prod-private-db"
}

variable "db_security_group_ids" {
  description = "Security groups attached to the databases."
  type        = list(string)
  default     = []
}
