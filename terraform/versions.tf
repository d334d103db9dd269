terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = "task-manager"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

data "aws_caller_identity" "current" {}

# Two named zones, so a zone AWS adds later never moves the subnets.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for suffix in var.availability_zone_suffixes : "${var.aws_region}${suffix}"]
  }
}

locals {
  name       = "task-manager-${var.environment}"
  ssm_prefix = "/task-manager/${var.environment}"
  azs        = slice(data.aws_availability_zones.available.names, 0, 2)
}
