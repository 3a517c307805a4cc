"""How the AWS Load Balancer Controller turns Services and Ingresses into target groups (pure logic)."""
