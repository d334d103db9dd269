# The app host: Amazon Linux 2023 (ships the AWS CLI the bootstrap uses), Docker and nginx,
# an instance profile instead of static keys, IMDSv2 only, an encrypted root volume.

data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }
}

data "aws_iam_policy_document" "app_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "app" {
  name               = "${local.name}-app"
  assume_role_policy = data.aws_iam_policy_document.app_assume.json
}

data "aws_iam_policy_document" "app" {
  statement {
    sid       = "ListFilesBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.files.arn]
  }

  statement {
    sid       = "ReadWriteFiles"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.files.arn}/*"]
  }

  statement {
    sid     = "ReadAppSettings"
    actions = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = [
      aws_ssm_parameter.database_url.arn,
      aws_ssm_parameter.redis_url.arn,
      aws_ssm_parameter.secret_key.arn,
    ]
  }

  statement {
    sid       = "UseProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "app" {
  name   = "files-and-settings"
  role   = aws_iam_role.app.id
  policy = data.aws_iam_policy_document.app.json
}

resource "aws_iam_instance_profile" "app" {
  name = "${local.name}-app"
  role = aws_iam_role.app.name
}

resource "aws_instance" "app" {
  ami                    = data.aws_ami.al2023.id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public.id
  vpc_security_group_ids = [aws_security_group.app.id]
  iam_instance_profile   = aws_iam_instance_profile.app.name
  key_name               = var.ssh_key_name
  monitoring             = true
  ebs_optimized          = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
    # 2 hops: the app runs in a container and reaches the instance profile's credentials
    # through the Docker bridge.
    http_put_response_hop_limit = 2
  }

  root_block_device {
    encrypted   = true
    kms_key_id  = aws_kms_key.main.arn
    volume_type = "gp3"
    volume_size = 20
  }

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    aws_region      = var.aws_region
    ssm_prefix      = local.ssm_prefix
    s3_bucket       = aws_s3_bucket.files.id
    web_concurrency = var.web_concurrency
    initial_image   = var.initial_image
    nginx_site = replace(
      replace(file("${path.module}/../scripts/deploy/nginx/task-manager.conf.template"), "@LISTEN@", "80 default_server"),
      "@UPSTREAM_FILE@", "/etc/nginx/task-manager/upstream.conf"
    )
    blue_green_gz     = base64gzip(file("${path.module}/../scripts/deploy/blue_green.sh"))
    runtime_docker_gz = base64gzip(file("${path.module}/../scripts/deploy/runtime-docker.sh"))
  })

  tags = { Name = "${local.name}-app" }

  lifecycle {
    # A newer AMI must not replace the running host; roll hosts deliberately.
    ignore_changes = [ami, user_data]
  }

  # The settings the bootstrap reads must exist before the host boots.
  depends_on = [
    aws_ssm_parameter.database_url,
    aws_ssm_parameter.redis_url,
    aws_ssm_parameter.secret_key,
  ]
}

resource "aws_eip" "app" {
  domain   = "vpc"
  instance = aws_instance.app.id

  tags = { Name = "${local.name}-app" }

  depends_on = [aws_internet_gateway.main]
}
