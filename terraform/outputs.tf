output "app_public_ip" {
  description = "Elastic IP of the app host: the API is http://<this>/docs; secret EC2_HOST."
  value       = aws_eip.app.public_ip
}

output "ssh_command" {
  description = "SSH to the host; then `ssh-keyscan -t ed25519 <ip>` (checked against the console output) gives EC2_SSH_KNOWN_HOSTS."
  value       = "ssh ec2-user@${aws_eip.app.public_ip}"
}

output "rds_endpoint" {
  description = "Private address of RDS PostgreSQL (reachable from the app host only)."
  value       = aws_db_instance.postgres.address
}

output "redis_endpoint" {
  description = "Private address of ElastiCache Redis (TLS, reachable from the app host only)."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "s3_bucket" {
  description = "Bucket holding file attachments."
  value       = aws_s3_bucket.files.id
}

output "ssm_parameters" {
  description = "SSM SecureString parameters the host reads at boot."
  value = [
    aws_ssm_parameter.database_url.name,
    aws_ssm_parameter.redis_url.name,
    aws_ssm_parameter.secret_key.name,
  ]
}
