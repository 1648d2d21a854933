// Loads ModelLine.NodeSet2.xml into node-opcua's own address space, with the standard and DI NodeSets
// node-opcua ships: an independent check that the NodeSet is valid and its types are usable.
//
//   node nodeset_check.mjs <ModelLine.NodeSet2.xml> <ObjectType name>...
import { AddressSpace } from "node-opcua-address-space";
import { generateAddressSpace } from "node-opcua-address-space/nodeJS.js";
import { nodesets } from "node-opcua-nodesets";

const [file, ...names] = process.argv.slice(2);
const addressSpace = AddressSpace.create();
await generateAddressSpace(addressSpace, [nodesets.standard, nodesets.di, file]);
const ns = addressSpace.getNamespaceIndex("http://modelline.io/UA/");
if (ns < 0) throw new Error("ModelLine namespace not loaded");
const types = {};
for (const name of names) {
  const type = addressSpace.findObjectType(name, ns);
  if (!type) throw new Error(`type ${name} missing`);
  types[name] = type.getComponents().concat(type.getProperties()).map((c) => c.browseName.name).sort();
}
const deploy = addressSpace.findObjectType("ModelManagerType", ns).getMethodByName("Deploy");
const args = deploy.getInputArguments().map((a) => `${a.name}:${a.dataType.toString()}:${a.valueRank}`);
const device = addressSpace.findObjectType("InferenceDeviceType", ns);
const fetch = addressSpace.findObjectType("RecordSourceType", ns).getMethodByName("FetchRecords");
const fetchArgs = fetch.getInputArguments().concat(fetch.getOutputArguments())
  .map((a) => `${a.name}:${a.dataType.toString()}:${a.valueRank}`);
const recordsReady = addressSpace.findEventType("RecordsReadyEventType", ns);
const instance = addressSpace.findObjectType("DeploymentType", ns).instantiate({
  browseName: "check", organizedBy: addressSpace.rootFolder.objects,
});
const enumStrings = (name) => {
  const dataType = addressSpace.findDataType(name, ns);
  const prop = dataType.getChildByName("EnumStrings");
  return prop.readValue().value.value.map((t) => t.text);
};
console.log(JSON.stringify({
  types, deployArgs: args, deviceSuper: device.subtypeOfObj.browseName.toString(), fetchArgs,
  recordsReadySuper: recordsReady.subtypeOfObj.browseName.toString(),
  instanceChildren: instance.getComponents().map((c) => c.browseName.name).sort(),
  deploymentStates: enumStrings("DeploymentState"), pipelineStates: enumStrings("PipelineState"),
}));
addressSpace.dispose();
