module "orders_db" {
  source = "../../modules/rds"

  identifier            = "orders-staging"
  instance_class        = "db.t3.medium"
  allocated_storage     = 50
  max_allocated_storage = 200
  multi_az              = false
  deletion_protection   = true
  publicly_accessible   = false

  backup_retention_period = 7
  db_subnet_group_name    = var.db_subnet_group_name
  vpc_security_group_ids  = var.db_security_group_ids
}
