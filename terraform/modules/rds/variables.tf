variable "identifier" {
  description = "Name of the DB instance, unique per account and region."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "DB instance class, e.g. db.t3.medium."
  type        = string

  validation {
    condition     = startswith(var.instance_class, "db.")
    error_message = "instance_class must be an RDS instance class such as db.t3.medium."
  }
}

variable "allocated_storage" {
  description = "Initial storage in GiB; storage autoscaling may grow it up to max_allocated_storage."
  type        = number

  validation {
    condition     = var.allocated_storage >= 20 && var.allocated_storage <= 65536
    error_message = "allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "max_allocated_storage" {
  description = "Ceiling for storage autoscaling in GiB; 0 disables it."
  type        = number
  default     = 0
}

variable "multi_az" {
  description = "Run a synchronous standby in a second availability zone."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse to delete the instance until this is set to false."
  type        = bool
  default     = true
}

variable "publicly_accessible" {
  description = "Give the instance a public IP. Should stay false."
  type        = bool
  default     = false
}

variable "skip_final_snapshot" {
  description = "Delete without taking a final snapshot (throwaway environments only)."
  type        = bool
  default     = false
}

variable "backup_retention_period" {
  description = "Days to keep automated backups."
  type        = number
  default     = 7
}

variable "db_subnet_group_name" {
  description = "DB subnet group placing the instance in private subnets."
  type        = string
}

variable "vpc_security_group_ids" {
  description = "Security groups attached to the instance."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra tags for the instance."
  type        = map(string)
  default     = {}
}
