"""Write-through to Shopify, its ordered outbox and the reconciliation job."""
