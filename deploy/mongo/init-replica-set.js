// Run once by the compose service `mongo-init` (mongosh --file): initiates the three-member
// replica set rs0 unless it already exists, then waits until a primary is elected, so that
// the services that depend on this one start against a writable cluster. Safe to rerun.
const config = {
  _id: "rs0",
  members: [
    { _id: 0, host: "mongo1:27017", priority: 2 },
    { _id: 1, host: "mongo2:27017", priority: 1 },
    { _id: 2, host: "mongo3:27017", priority: 1 },
  ],
};

try {
  rs.status();
  print("rs0: already initiated");
} catch (error) {
  if (error.codeName !== "NotYetInitialized") {
    throw error;
  }
  rs.initiate(config);
  print("rs0: initiated with mongo1, mongo2, mongo3");
}

const deadline = Date.now() + 60 * 1000;
for (;;) {
  const primary = rs.status().members.find((member) => member.stateStr === "PRIMARY");
  if (primary !== undefined) {
    print(`rs0: primary is ${primary.name}`);
    break;
  }
  if (Date.now() > deadline) {
    throw new Error("rs0: no primary elected within 60 s");
  }
  sleep(500);
}
