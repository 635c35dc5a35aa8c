"""The operator web console: dashboard, kill switch, module pages and history (server-rendered)."""
