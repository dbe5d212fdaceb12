module "artifacts_bucket" {
  source = "../../modules/s3"

  bucket     = "example-opsgate-artifacts-prod"
  versioning = true
}
