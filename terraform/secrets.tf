# Generated secrets, stored as SecureString SSM parameters under the project key. The host reads
# them at boot through its instance profile; nothing secret is in user_data or in the image.
# They are in the Terraform state too: keep the state in an encrypted, access-controlled backend.

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "random_password" "redis" {
  length  = 48
  special = false
}

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "aws_ssm_parameter" "database_url" {
  name        = "${local.ssm_prefix}/database_url"
  description = "DATABASE_URL of the app (RDS PostgreSQL)"
  type        = "SecureString"
  key_id      = aws_kms_key.main.arn
  value       = "postgresql://${var.db_username}:${random_password.db.result}@${aws_db_instance.postgres.address}:${aws_db_instance.postgres.port}/${var.db_name}"
}

resource "aws_ssm_parameter" "redis_url" {
  name        = "${local.ssm_prefix}/redis_url"
  description = "REDIS_URL of the app (ElastiCache, TLS and AUTH token)"
  type        = "SecureString"
  key_id      = aws_kms_key.main.arn
  value       = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379/0"
}

resource "aws_ssm_parameter" "secret_key" {
  name        = "${local.ssm_prefix}/secret_key"
  description = "SECRET_KEY that signs the app's tokens"
  type        = "SecureString"
  key_id      = aws_kms_key.main.arn
  value       = random_password.secret_key.result
}
