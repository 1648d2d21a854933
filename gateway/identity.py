"""The gateway's application identity: its ApplicationUri (in its certificate) and name, server and client alike."""

from sdk.opcua.connect import GATEWAY_URI

INSTANCE_URI = GATEWAY_URI
GATEWAY_NAME = "ModelLine Model Manager"
