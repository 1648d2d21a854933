// node-opcua as a stranger with a login on the ModelLine gateway: what its role lets it do.
//
//   node gateway_roles.mjs <endpoint> <user> <password> <model> <version>
//
// Reads UserExecutable of ModelManager/Deploy and of the stored package's Open (OPC 10000-3 5.7: for
// this session), calls Deploy (of <model> <version> to a device that does not exist) and Open on
// Models/<model>/<version>/Package, and prints a JSON summary of the StatusCodes (the last line).
import { AttributeIds, DataType } from "node-opcua-client";
import { connect, resolve } from "./common.mjs";

const [endpoint, user, password, model, version] = process.argv.slice(2);
const ML = "http://modelline.io/UA/";

const { client, session } = await connect(endpoint, user, password);
const ml = (await session.readNamespaceArray()).indexOf(ML);
const manager = await resolve(session, "ObjectsFolder", `/${ml}:ModelManager`);
const deploy = await resolve(session, manager, `/${ml}:Deploy`);
const escaped = (name) => name.replace(/[.&/<>:#!]/g, (c) => `&${c}`); // relative path syntax (OPC 10000-4 A.2)
const packageNode = await resolve(
  session, manager, `/${ml}:Models/1:${escaped(model)}/1:${escaped(version)}/${ml}:Package`,
);
const open = await resolve(session, packageNode, "/Open");
const executable = async (nodeId) =>
  (await session.read({ nodeId, attributeId: AttributeIds.UserExecutable })).value.value;

const deployed = await session.call({
  objectId: manager, methodId: deploy,
  inputArguments: [
    { dataType: DataType.String, value: model },
    { dataType: DataType.String, value: version },
    { dataType: DataType.String, arrayType: 1, value: ["no-such-device"] },
    { dataType: DataType.String, value: "" },
  ],
});
const opened = await session.call({
  objectId: packageNode, methodId: open, inputArguments: [{ dataType: DataType.Byte, value: 1 }],
});
console.log(JSON.stringify({
  deployExecutable: await executable(deploy),
  openExecutable: await executable(open),
  deploy: deployed.statusCode.name,
  open: opened.statusCode.name,
}));
await session.close();
await client.disconnect();
