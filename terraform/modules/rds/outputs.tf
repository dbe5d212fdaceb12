output "identifier" {
  description = "Name of the DB instance."
  value       = aws_db_instance.this.identifier
}

output "endpoint" {
  description = "host:port to connect to."
  value       = aws_db_instance.this.endpoint
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the master password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
