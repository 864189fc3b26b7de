// Handlers of the serverless-offline peer: the same frames as Parley's ping, join_room and
// chat_message, with rooms in this module's memory (valid only with --useInProcess, one process).
"use strict";
const { ApiGatewayManagementApiClient, PostToConnectionCommand } = require("@aws-sdk/client-apigatewaymanagementapi");

const rooms = new Map(); // roomId -> Map(connectionId -> userId)
const joined = new Map(); // connectionId -> Set(roomId)
let client;

function api() {
  if (!client) {
    client = new ApiGatewayManagementApiClient({
      endpoint: process.env.PEER_CONNECTIONS_ENDPOINT,
      region: "us-east-1",
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });
  }
  return client;
}

const frame = (type, data) => JSON.stringify({ type, data });
const reply = (type, data) => ({ statusCode: 200, body: frame(type, data) });

async function broadcast(ids, body) {
  const data = Buffer.from(body);
  const c = api();
  let delivered = 0;
  const queue = [...ids];
  async function lane() {
    while (queue.length) {
      const id = queue.shift();
      try {
        await c.send(new PostToConnectionCommand({ ConnectionId: id, Data: data }));
        delivered += 1;
      } catch (err) {
        if (err.name !== "GoneException") console.error(`post ${id}: ${err.name}`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(64, queue.length) }, lane)); // 64 in flight, as Parley's sender
  return delivered;
}

exports.connect = async () => ({ statusCode: 200 });

exports.disconnect = async (event) => {
  const id = event.requestContext.connectionId;
  for (const room of joined.get(id) || []) rooms.get(room)?.delete(id);
  joined.delete(id);
  console.log(`peer-disconnect ${id}`);
  return { statusCode: 200 };
};

exports.ping = async () => reply("pong", { timestamp: new Date().toISOString() });

exports.joinRoom = async (event) => {
  const id = event.requestContext.connectionId;
  const { roomId } = JSON.parse(event.body).data;
  const user = `user-${id}`;
  const members = rooms.get(roomId) || new Map();
  rooms.set(roomId, members);
  if (!members.has(id)) {
    await broadcast([...members.keys()], frame("user_joined", { roomId, userId: user, timestamp: new Date().toISOString() }));
    members.set(id, user);
    if (!joined.has(id)) joined.set(id, new Set());
    joined.get(id).add(roomId);
  }
  const participants = [...members.values()].map((userId) => ({ userId }));
  await broadcast([id], frame("participants_list", { roomId, participants }));
  return reply("chat_history", { roomId, messages: [], hasMore: false });
};

exports.chatMessage = async (event) => {
  const id = event.requestContext.connectionId;
  const { roomId, message } = JSON.parse(event.body).data;
  const members = rooms.get(roomId);
  if (!members || !members.has(id)) return reply("error", { code: "not_a_member", roomId });
  const messageId = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const body = frame("message_received", { roomId, messageId, userId: members.get(id), message, timestamp: new Date().toISOString() });
  const delivered = await broadcast([...members.keys()], body);
  return reply("chat_update", { roomId, messageId, status: "delivered", deliveredTo: delivered - 1 });
};
