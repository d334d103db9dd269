resource "aws_elasticache_subnet_group" "main" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
}

# A replication group (one node) rather than a bare cluster: only it offers encryption in
# transit, at rest, and an AUTH token.
resource "aws_elasticache_replication_group" "redis" {
  # checkov:skip=CKV2_AWS_50: one node for cost; Redis holds only a rebuildable stats cache and minute-long rate-limit counters
  replication_group_id = "${local.name}-redis"
  description          = "Task Manager stats cache and shared rate-limit counters"
  engine               = "redis"
  engine_version       = "7.1"
  node_type            = var.redis_node_type
  num_cache_clusters   = 1
  port                 = 6379

  subnet_group_name  = aws_elasticache_subnet_group.main.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result

  snapshot_retention_limit   = 3
  auto_minor_version_upgrade = true
  automatic_failover_enabled = false
}
