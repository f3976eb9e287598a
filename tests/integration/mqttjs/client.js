// A scripted MQTT.js client for the integration tests (harness.MqttJs).
// Reads one JSON command per line on stdin and writes one JSON event per
// line on stdout. Buffers cross as {"$b64": "..."}.
//   {"op":"connect","url":U,"opts":{...}}        -> connect | error | ...
//   {"op":"subscribe","filter":F,"opts":{...}}    -> suback
//   {"op":"unsubscribe","filter":F,"opts":{...}}  -> unsuback
//   {"op":"publish","topic":T,"payload":P,"opts":{...},"tag":X}
//                                                  -> published (the ack, or its error)
//   {"op":"end","opts":{...}}                      -> ended
// and, unprompted: message, disconnect (a DISCONNECT from the server),
// close, error.
"use strict";
const path = require("path");
const readline = require("readline");
const mqtt = require(path.join(process.env.MQTTJS_DIR || __dirname, "node_modules", "mqtt"));

function fromJson(v) {
	if (v && typeof v === "object") {
		if (typeof v.$b64 === "string" && Object.keys(v).length === 1)
			return Buffer.from(v.$b64, "base64");
		if (Array.isArray(v))
			return v.map(fromJson);
		const o = {};
		for (const k of Object.keys(v))
			o[k] = fromJson(v[k]);
		return o;
	}
	return v;
}

function toJson(v) {
	if (Buffer.isBuffer(v))
		return {$b64: v.toString("base64")};
	if (v && typeof v === "object") {
		if (Array.isArray(v))
			return v.map(toJson);
		const o = {};
		for (const k of Object.keys(v))
			o[k] = toJson(v[k]);
		return o;
	}
	return v;
}

function emit(ev) {
	process.stdout.write(JSON.stringify(toJson(ev)) + "\n");
}

function errInfo(err) {
	return {message: String(err && err.message), code: err && err.code};
}

let client = null;

function wire(c) {
	c.on("connect", (ack) => emit({ev: "connect", sessionPresent: ack.sessionPresent,
				       reasonCode: ack.reasonCode, properties: ack.properties || {}}));
	c.on("message", (topic, payload, packet) =>
		emit({ev: "message", topic: topic, payload: payload, qos: packet.qos,
		      retain: packet.retain, dup: packet.dup, properties: packet.properties || {}}));
	c.on("disconnect", (packet) => emit({ev: "disconnect", reasonCode: packet.reasonCode,
					     properties: packet.properties || {}}));
	c.on("close", () => emit({ev: "close"}));
	c.on("error", (err) => emit(Object.assign({ev: "error"}, errInfo(err))));
}

function handle(cmd) {
	const opts = fromJson(cmd.opts || {});
	switch (cmd.op) {
	case "connect":
		client = mqtt.connect(cmd.url, Object.assign({reconnectPeriod: 0, connectTimeout: 5000},
							     opts));
		wire(client);
		break;
	case "subscribe":
		client.subscribe(cmd.filter, opts, (err, granted) =>
			emit({ev: "suback", error: err ? errInfo(err) : null, granted: granted || []}));
		break;
	case "unsubscribe":
		client.unsubscribe(cmd.filter, opts, (err, packet) =>
			emit({ev: "unsuback", error: err ? errInfo(err) : null,
			      reasonCodes: (packet && packet.reasonCode !== undefined)
					       ? [packet.reasonCode] : []}));
		break;
	case "publish":
		client.publish(cmd.topic, fromJson(cmd.payload), opts, (err, packet) =>
			emit({ev: "published", tag: cmd.tag, error: err ? errInfo(err) : null,
			      reasonCode: packet && packet.reasonCode}));
		break;
	case "end":
		client.end(!!cmd.force, opts, () => emit({ev: "ended"}));
		break;
	default:
		emit({ev: "error", message: "unknown op " + cmd.op});
	}
}

readline.createInterface({input: process.stdin}).on("line", (line) => {
	if (line.trim() === "")
		return;
	try {
		handle(JSON.parse(line));
	} catch (e) {
		emit(Object.assign({ev: "error"}, errInfo(e)));
	}
}).on("close", () => {
	if (client)
		client.end(true);
	process.exit(0);
});
