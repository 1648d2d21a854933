// What the node-opcua interop scripts share: failing with a message, resolving browse paths,
// connecting the way an ordinary client does, finding a DI SoftwareUpdate and checking value types.
import { OPCUACertificateManager } from "node-opcua-certificate-manager";  // a dependency of node-opcua-client
import { AttributeIds, BrowseDirection, DataType, MessageSecurityMode, OPCUAClient, SecurityPolicy, StatusCodes,
  UserTokenType, makeBrowsePath } from "node-opcua-client";

export function fail(message) {
  console.error(message);
  process.exit(1);
}

export async function resolve(session, start, path) {
  const [result] = await session.translateBrowsePath([makeBrowsePath(start, path)]);
  if (result.statusCode !== StatusCodes.Good) fail(`cannot resolve ${path}: ${result.statusCode.toString()}`);
  return result.targets[0].targetId;
}

// The options of a client that connects as ModelLine servers require: over SignAndEncrypt with the
// strongest policy the server offers, with the certificate the tests gave it (MODELLINE_TEST_NODE_OPCUA_*:
// issued by the CA the servers under test trust, tests/tls.py). A server that offers no secure endpoint
// (a plain test server) gets no security.
const POLICIES = [SecurityPolicy.Aes256_Sha256_RsaPss, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Basic256Sha256];
export async function clientOptions(endpoint, extra = {}) {
  const probe = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 3, initialDelay: 200 } });
  await probe.connect(endpoint);
  const endpoints = await probe.getEndpoints();
  await probe.disconnect();
  const options = { endpointMustExist: false, connectionStrategy: { maxRetry: 3, initialDelay: 200 }, ...extra };
  const offered = (policy) => endpoints.some((e) => e.securityPolicyUri === policy && e.securityMode === MessageSecurityMode.SignAndEncrypt);
  const env = process.env;
  const policy = POLICIES.find(offered);
  if (!policy || env.MODELLINE_TEST_NODE_OPCUA_SECURITY === "None") return options;
  if (env.MODELLINE_TEST_NODE_OPCUA_PKI) {
    options.clientCertificateManager = new OPCUACertificateManager({
      rootFolder: env.MODELLINE_TEST_NODE_OPCUA_PKI, automaticallyAcceptUnknownCertificate: true });
  }
  if (env.MODELLINE_TEST_NODE_OPCUA_CERT) {
    options.certificateFile = env.MODELLINE_TEST_NODE_OPCUA_CERT;
    options.privateKeyFile = env.MODELLINE_TEST_NODE_OPCUA_KEY;
    options.applicationUri = env.MODELLINE_TEST_NODE_OPCUA_URI;
  }
  return { ...options, securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: policy };
}

// userIdentity: a node-opcua identity, or a user name with its password (node-opcua encrypts the password).
export async function connect(endpoint, userIdentity = undefined, password = null) {
  if (typeof userIdentity === "string") userIdentity = { type: UserTokenType.UserName, userName: userIdentity, password };
  const client = OPCUAClient.create(await clientOptions(endpoint));
  await client.connect(endpoint);
  return { client, session: await client.createSession(userIdentity) };
}

// DeviceSet/<device>/<component> with a SoftwareUpdate AddIn (OPC 10000-100 8.2, HasAddIn i=17604),
// found by browsing alone: { device, slot, update } or null.
export async function findSoftwareUpdate(session, di) {
  const deviceSet = await resolve(session, "ObjectsFolder", `/${di}:DeviceSet`);
  const forward = (nodeId, referenceTypeId) =>
    session.browse({ nodeId, referenceTypeId, browseDirection: BrowseDirection.Forward }).then((r) => r.references);
  for (const dev of await forward(deviceSet)) {
    for (const component of await forward(dev.nodeId)) {
      const found = (await forward(component.nodeId, "ns=0;i=17604")).find((r) => r.browseName.name === "SoftwareUpdate");
      if (found) return { device: dev.browseName.name, slot: component.browseName.name, update: found.nodeId };
    }
  }
  return null;
}

// Built-in types (OPC 10000-6 5.1.2) by DataType: follows HasSubtype up to a built-in type. An
// Enumeration is an Int32 on the wire, a Structure an ExtensionObject; the abstract BaseDataType,
// Number, Integer and UInteger accept every value they cover. `known` maps DataType -> supertype.
const SIGNED = [DataType.SByte, DataType.Int16, DataType.Int32, DataType.Int64];
const UNSIGNED = [DataType.Byte, DataType.UInt16, DataType.UInt32, DataType.UInt64];
export function dataTypes(session, known = new Map()) {
  const cache = new Map();
  async function supertypeOf(id) {
    if (known.has(id)) return known.get(id);
    const [result] = await session.browse([{ nodeId: id, referenceTypeId: "ns=0;i=45", includeSubtypes: false,
      browseDirection: BrowseDirection.Inverse, nodeClassMask: 0, resultMask: 0x3f }]);
    const parent = result.references?.[0] ? result.references[0].nodeId.toString() : null;
    known.set(id, parent);
    return parent;
  }
  async function builtInOf(dataTypeId) {
    if (cache.has(dataTypeId)) return cache.get(dataTypeId);
    let id = dataTypeId;
    let builtIn = null;
    for (let depth = 0; id && depth < 32; depth++) {
      const match = /^ns=0;i=(\d+)$/.exec(id);
      if (match && Number(match[1]) >= 1 && Number(match[1]) <= 29) {
        builtIn = Number(match[1]);
        break;
      }
      id = await supertypeOf(id);
    }
    cache.set(dataTypeId, builtIn);
    return builtIn;
  }
  function accepts(builtIn, variantType) {
    if (builtIn === 24) return variantType !== DataType.Null; // BaseDataType
    if (builtIn === 26) return [...SIGNED, ...UNSIGNED, DataType.Float, DataType.Double].includes(variantType);
    if (builtIn === 27) return [...SIGNED, ...UNSIGNED].includes(variantType); // Integer
    if (builtIn === 28) return UNSIGNED.includes(variantType); // UInteger
    if (builtIn === 29) return variantType === DataType.Int32; // Enumeration
    return builtIn === variantType;
  }
  return { builtInOf, accepts };
}

// Calls a method found by browse name under objectId; fails unless it answers Good.
export async function call(session, objectId, methodName, ns, inputArguments) {
  const methodId = await resolve(session, objectId, `/${ns}:${methodName}`);
  const result = await session.call({ objectId, methodId, inputArguments });
  if (result.statusCode !== StatusCodes.Good) fail(`${methodName}: ${result.statusCode.toString()}`);
  return result.outputArguments;
}

// Writes a package to PendingVersion through Loading/FileTransfer: GenerateFileForWrite with
// SoftwareVersionFileType Pending (DI 8.5.1), Write in chunks of the server's MaxByteStringLength,
// CloseAndCommit (OPC 10000-20 4.4 TemporaryFileTransferType).
export async function transferToPending(session, loading, di, data) {
  const transfer = await resolve(session, loading, `/${di}:FileTransfer`);
  const [fileNodeId, fileHandle] = (await call(session, transfer, "GenerateFileForWrite", 0, [
    { dataType: DataType.Int32, value: 1 },
  ])).map((v) => v.value);
  const maxByteString = (await session.read({ nodeId: "ns=0;i=12911", attributeId: AttributeIds.Value })).value.value;
  const chunk = Math.min(maxByteString || 65536, 1 << 20);
  const writeId = await resolve(session, fileNodeId, "/Write");
  for (let start = 0; start < data.length; start += chunk) {
    const result = await session.call({
      objectId: fileNodeId, methodId: writeId,
      inputArguments: [
        { dataType: DataType.UInt32, value: fileHandle },
        { dataType: DataType.ByteString, value: data.subarray(start, start + chunk) },
      ],
    });
    if (result.statusCode !== StatusCodes.Good) fail(`Write: ${result.statusCode.toString()}`);
  }
  await call(session, transfer, "CloseAndCommit", 0, [{ dataType: DataType.UInt32, value: fileHandle }]);
}
