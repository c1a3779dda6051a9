"""The Tidings Kubernetes operator (kopf). Its reconcilers arrive with the operator issue."""
