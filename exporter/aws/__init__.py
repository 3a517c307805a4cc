"""What AWS says about the cluster's load balancers and the network path to their targets.

Only ``exporter.aws.api`` imports boto3/botocore; every other module here is pure and typed, so the
checks, the metrics renderer and the node role's settings merge can import the model without pulling
in the AWS SDK. See docs/aws.md.
"""
