variable "aws_region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name, used in resource names and SSM parameter paths."
  type        = string
  default     = "production"
}

variable "availability_zone_suffixes" {
  description = "The two availability zones used, as suffixes of aws_region (private subnets for RDS and ElastiCache span both)."
  type        = list(string)
  default     = ["a", "b"]

  validation {
    condition     = length(var.availability_zone_suffixes) == 2
    error_message = "Give exactly two availability zone suffixes."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the dedicated VPC (one public subnet for the app, two private ones for RDS and ElastiCache)."
  type        = string
  default     = "10.20.0.0/16"
}

variable "ssh_allowed_cidrs" {
  description = "The only CIDRs allowed to SSH to the app host: your IP/32 and the deploy runner's (a self-hosted runner or a larger runner with static IPs). Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = length(var.ssh_allowed_cidrs) > 0 && alltrue([for cidr in var.ssh_allowed_cidrs : can(cidrhost(cidr, 0)) && !endswith(cidr, "/0")])
    error_message = "ssh_allowed_cidrs must be valid CIDRs, none of them /0."
  }
}

variable "ssh_key_name" {
  description = "Name of an existing EC2 key pair whose private key the deploy workflow uses (secret EC2_SSH_PRIVATE_KEY)."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type of the app host (runs nginx and two app containers during a deploy)."
  type        = string
  default     = "t3.small"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "RDS PostgreSQL engine version."
  type        = string
  default     = "16.4"
}

variable "db_name" {
  description = "Name of the application database."
  type        = string
  default     = "taskmanager"
}

variable "db_username" {
  description = "Master user name of the database (its password is generated and kept in SSM)."
  type        = string
  default     = "taskmanager"
}

variable "db_multi_az" {
  description = "Run RDS in two availability zones (doubles its cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups kept."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the database from `terraform destroy`; set false only to tear everything down."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}

variable "initial_image" {
  description = "Image the host deploys on first boot (e.g. ghcr.io/owner/repo:main, must be pullable without login). Empty: wait for the first deploy workflow run."
  type        = string
  default     = ""
}

variable "web_concurrency" {
  description = "Uvicorn worker processes per app container (WEB_CONCURRENCY)."
  type        = number
  default     = 2
}
