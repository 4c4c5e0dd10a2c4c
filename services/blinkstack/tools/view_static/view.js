// The live view: one EventSource ("/stream") with frame, event and stats messages (see tools/view.py).
const WINDOW_S = 10;  // seconds of prob_open and lid aperture shown in each timeline
const THRESHOLD = 0.5;  // the eye-state service's default threshold on prob_open
const streams = new Map();  // stream id -> {img, plot, data}

function streamCard(id) {
  if (streams.has(id)) return streams.get(id);
  const card = document.createElement("div");
  card.className = "stream";
  card.dataset.stream = id;
  const title = document.createElement("h3");
  title.textContent = id;
  const img = document.createElement("img");
  img.className = "video";
  img.alt = "annotated frames of " + id;
  const chart = document.createElement("div");
  chart.className = "chart";
  card.append(title, img, chart);
  document.getElementById("streams").append(card);
  const data = [[], [], [], [], [], []];  // t, left, right, threshold, left aperture, right aperture
  const plot = new uPlot({
    width: 640, height: 200,
    scales: { x: { time: false }, y: { range: [0, 1] }, aperture: { range: [0, 0.5] } },
    axes: [{}, { label: "prob_open" }, { scale: "aperture", side: 1, label: "lid aperture", grid: { show: false } }],
    series: [
      { label: "video time (s)" },
      { label: "left prob_open", stroke: "#1f77b4", spanGaps: false },
      { label: "right prob_open", stroke: "#ff7f0e", spanGaps: false },
      { label: "threshold", stroke: "#888", dash: [4, 4] },
      { label: "left aperture", stroke: "#2ca02c", scale: "aperture", spanGaps: false },
      { label: "right aperture", stroke: "#9467bd", scale: "aperture", spanGaps: false },
    ],
  }, data, chart);
  const entry = { img, plot, data };
  streams.set(id, entry);
  return entry;
}

function onFrame(message) {
  const entry = streamCard(message.stream_id);
  entry.img.src = "data:image/jpeg;base64," + message.jpeg;
  entry.img.dataset.seq = message.seq;
  const face = message.faces[0];
  const [t, left, right, threshold, leftAperture, rightAperture] = entry.data;
  t.push(message.t);
  left.push(face && face.left.state !== "unknown" ? face.left.prob_open : null);
  right.push(face && face.right.state !== "unknown" ? face.right.prob_open : null);
  threshold.push(THRESHOLD);
  leftAperture.push(face ? face.left.aperture : null);
  rightAperture.push(face ? face.right.aperture : null);
  while (t.length && t[0] < message.t - WINDOW_S) entry.data.forEach((column) => column.shift());
  entry.plot.setData(entry.data);
}

function onEvent(message) {
  const item = document.createElement("li");
  item.className = "event" + (message.level ? " level-" + message.level : "");
  item.dataset.type = message.type;
  item.textContent = message.stream_id + "  " + message.text;
  const list = document.getElementById("events");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

function onStats(message) {
  const key = message.stream_id + " / " + message.track_id;
  const body = document.querySelector("#stats tbody");
  let row = [...body.rows].find((r) => r.dataset.key === key);
  if (!row) {
    row = body.insertRow();
    row.dataset.key = key;
    for (let i = 0; i < 5; i++) row.insertCell();
  }
  const cells = [key, message.blinks_per_minute, message.perclos, message.mean_blink_ms + " ms", message.drowsiness];
  cells.forEach((value, i) => { row.cells[i].textContent = value; });
  row.className = "level-" + message.drowsiness;
}

const source = new EventSource("/stream");
source.onopen = () => { document.getElementById("status").textContent = "live"; };
source.onerror = () => { document.getElementById("status").textContent = "reconnecting..."; };
source.addEventListener("frame", (e) => onFrame(JSON.parse(e.data)));
source.addEventListener("event", (e) => onEvent(JSON.parse(e.data)));
source.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
