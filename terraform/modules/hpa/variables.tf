variable "name" {
  description = "Name of the Deployment to scale; the HPA gets the same name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.name)) && length(var.name) <= 63
    error_message = "name must be a DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters."
  }
}

variable "namespace" {
  description = "Namespace of the Deployment and of the HPA."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "namespace must be a DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters."
  }
}

variable "min_replicas" {
  description = "Lower bound on the number of pods the HPA keeps."
  type        = number

  validation {
    condition     = var.min_replicas >= 1 && floor(var.min_replicas) == var.min_replicas
    error_message = "min_replicas must be a whole number of at least 1."
  }
}

variable "max_replicas" {
  description = "Upper bound on the number of pods the HPA may scale to."
  type        = number

  validation {
    condition     = var.max_replicas >= var.min_replicas && floor(var.max_replicas) == var.max_replicas
    error_message = "max_replicas must be a whole number no smaller than min_replicas."
  }
}

variable "target_cpu_utilization" {
  description = "Average CPU utilization, in percent of the pods' CPU requests, that the HPA aims for."
  type        = number
  default     = 70

  validation {
    condition     = var.target_cpu_utilization >= 1 && var.target_cpu_utilization <= 100
    error_message = "target_cpu_utilization must be between 1 and 100."
  }
}
