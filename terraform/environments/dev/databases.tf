module "orders_db" {
  source = "../../modules/rds"

  identifier            = "orders-dev"
  instance_class        = "db.t3.medium"
  allocated_storage     = 20
  max_allocated_storage = 50
  multi_az              = false
  deletion_protection   = false
  publicly_accessible   = false
  skip_final_snapshot   = true # throwaway data in dev

  backup_retention_period = 1
  db_subnet_group_name    = var.db_subnet_group_name
  vpc_security_group_ids  = var.db_security_group_ids
}
