// Drives the official @gradio/client against a running app and prints what a caller sees, one JSON line each.
//
//   node predict.mjs <url> <calls.json>
//
// <calls.json> is a JSON array of {"endpoint": "/echo", "data": {...} or [...], "mode": "predict" | "submit"};
// a value {"file": "/local/path"} in data is sent as `handle_file(path)` (uploaded first, as a caller's file is).
// Optional: "start_after_s" (the call starts that long after the others), "cancel_after_s" (mode "submit":
// `job.cancel()` that long after it started, with a {"call": i, "event": "cancel"} line).
// Every call starts at once from one connected client (one session, as a page would). Lines printed:
//   {"call": i, "event": "status", "stage", "position", "size", "eta", "message", ...}  (mode "submit")
//   {"call": i, "event": "data", "data": [...]}                                           (mode "submit")
//   {"call": i, "event": "result", "data": [...]}                                         (mode "predict")
//   {"call": i, "event": "log", "level": "info", "log": "..."}                       (gr.Info, gr.Warning)
//   {"call": i, "event": "error", "message": "..."}          (predict rejected, or the iteration threw)
//   {"event": "connected", "session_hash": "...", "endpoints": [...]}                      (first line)
// The process exits 0 once every call has ended, whatever the calls' outcomes; 1 (after an "error" line
// with no call) when it could not connect; 2 on bad arguments.
import { Client, handle_file } from "@gradio/client";

const write = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function statusLine(call, event) {
	const { type, stage, position, size, eta, message, title, queue, code, success, progress_data } = event;
	return { call, event: type, stage, position, size, eta, message, title, queue, code, success, progress_data };
}

function withFiles(value) {
	if (Array.isArray(value)) return value.map(withFiles);
	if (value && typeof value === "object") {
		if (typeof value.file === "string" && Object.keys(value).length === 1) return handle_file(value.file);
		return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withFiles(item)]));
	}
	return value;
}

async function submitted(client, call, { endpoint, data, cancel_after_s }) {
	try {
		const job = client.submit(endpoint, withFiles(data));
		if (cancel_after_s !== undefined) {
			setTimeout(() => {
				write({ call, event: "cancel" });
				job.cancel();
			}, cancel_after_s * 1000);
		}
		for await (const event of job) {
			if (event.type === "data") write({ call, event: "data", data: event.data });
			else if (event.type === "status") write(statusLine(call, event));
			else if (event.type === "log") write({ call, event: "log", level: event.level, log: event.log });
		}
	} catch (error) {
		write({ call, event: "error", message: error?.message ?? String(error) });
	}
}

async function predicted(client, call, { endpoint, data }) {
	try {
		const result = await client.predict(endpoint, withFiles(data));
		write({ call, event: "result", data: result.data });
	} catch (error) {
		// predict() rejects with the final status event (a plain object), not an Error.
		write({ call, event: "error", message: error?.message ?? String(error), stage: error?.stage });
	}
}

async function main() {
	const [url, callsJson] = process.argv.slice(2);
	if (!url || !callsJson) {
		process.stderr.write("usage: node predict.mjs <url> <calls.json>\n");
		process.exit(2);
	}
	const calls = JSON.parse(callsJson);
	const client = await Client.connect(url, { events: ["data", "status", "log"] });
	write({
		event: "connected",
		session_hash: client.session_hash,
		endpoints: Object.keys(client.api_info?.named_endpoints ?? {})
	});
	const later = (seconds) => new Promise((resolve) => setTimeout(resolve, (seconds ?? 0) * 1000));
	await Promise.all(
		calls.map(async (spec, call) => {
			await later(spec.start_after_s);
			return (spec.mode === "predict" ? predicted : submitted)(client, call, spec);
		})
	);
	client.close();
	// The heartbeat stream the client may hold open has no way to close it: end here.
	process.exit(0);
}

main().catch((error) => {
	write({ event: "error", message: error?.message ?? String(error) });
	process.exit(1);
});
