"""Management plane: the only package that talks to Azure Resource Manager and imports Azure SDKs."""
