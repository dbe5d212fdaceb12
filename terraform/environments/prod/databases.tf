module "orders_db" {
  source = "../../modules/rds"

  identifier            = "orders-prod"
  instance_class        = "db.r6g.large"
  allocated_storage     = 100
  max_allocated_storage = 500
  multi_az              = true
  deletion_protection   = true
  publicly_accessible   = false

  backup_retention_period = 30
  db_subnet_group_name    = var.db_subnet_group_name
  vpc_security_group_ids  = var.db_security_group_ids
}
