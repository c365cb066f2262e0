// The page's calls to its basam-web server (basam_deploy/web/app.py). Every failure becomes an
// Error whose message is one line for the page to show.

const DOWN =
  "the basam-web server is not answering (stopped, or the connection dropped): start it again, then retry";

async function request(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new Error(DOWN);
  }
  if (!response.ok) {
    let line = `the server answered ${response.status} ${response.statusText}`;
    try {
      line = (await response.json()).error || line;
    } catch {
      // not our JSON (a proxy's page): the status line says enough
    }
    throw new Error(line);
  }
  return response;
}

export async function info() {
  return (await request("/api/info")).json();
}

// -> {data: Float32Array, shape: [1, C, h, w], transform, encode_ms}
export async function embed(file, name) {
  const response = await request(`/api/embed?name=${encodeURIComponent(name)}`, {
    method: "POST",
    body: file,
    headers: { "Content-Type": "application/octet-stream" },
  });
  const header = JSON.parse(response.headers.get("X-Basam-Embedding"));
  let data;
  try {
    data = new Float32Array(await response.arrayBuffer());
  } catch {
    throw new Error(DOWN);
  }
  const expected = header.shape.reduce((a, b) => a * b, 1);
  if (data.length !== expected) {
    throw new Error(`the embedding arrived incomplete (${data.length} of ${expected} values): retry`);
  }
  return { data, ...header };
}

// -> {masks: [{size, counts, area, predicted_iou}], coco, generate_ms}
export async function everything(file, name) {
  const response = await request(`/api/everything?name=${encodeURIComponent(name)}`, {
    method: "POST",
    body: file,
    headers: { "Content-Type": "application/octet-stream" },
  });
  return response.json();
}

export async function sample(name) {
  return (await request(`/samples/${encodeURIComponent(name)}`)).blob();
}
