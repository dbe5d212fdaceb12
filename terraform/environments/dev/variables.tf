variable "aws_region" {
  description = "AWS region of the dev environment."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "EKS cluster the Kubernetes provider talks to."
  type        = string
  default     = "opsgate-dev"
}

variable "db_subnet_group_name" {
  description = "DB subnet group with the private database subnets of the dev VPC."
  type        = string
  default     = "dev-private-db"
}

variable "db_security_group_ids" {
  description = "Security groups attached to the databases."
  type        = list(string)
  default     = []
}
