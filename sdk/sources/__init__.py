"""Where models come from: S3 objects and the SageMaker Model Registry (boto3, blocking calls)."""
