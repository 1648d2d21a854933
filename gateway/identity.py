"""The gateway's application identity: its ApplicationUri (in its certificate) and name, server and client alike."""

INSTANCE_URI = "urn:modelline:gateway"
GATEWAY_NAME = "ModelLine Model Manager"
