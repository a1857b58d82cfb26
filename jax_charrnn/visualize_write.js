// The Write panel of visualize's page: the network's step in plain JavaScript, from the weights
// embedded in the page (written by webnet.py), so that the page writes text as you watch.
// visualize.render inlines this file after the page's own script, whose D, $, el, glyph, pct
// and showTip it uses. No library, no network: typed arrays and float64 arithmetic.
//
// The step is PyTorch's (the package's cells compute the same): for layer k with input x
// (a one-hot character for k = 0, the layer below's h otherwise) and a = W_ih x + b_ih,
// u = W_hh h + b_hh, split into H-row blocks:
//   rnn   h' = tanh(a + u)
//   lstm  i, f, o = sigmoid(a + u) blocks 0, 1, 3; g = tanh(block 2); c' = f c + i g;
//         h' = o tanh(c')
//   gru   r, z = sigmoid(a + u) blocks 0, 1; n = tanh(a_n + r u_n); h' = (1 - z) n + z h
// and the logits are V h_top + c. Sampling is `sample`'s: temperature 0 takes the most likely
// character (the first of equals, as argmax does), otherwise the logits divided by the
// temperature, cut to the most likely characters holding top-p of the probability, drawn
// with a seeded generator of the page's own (so a seed repeats a text in the page; it is not
// JAX's generator, so sampled texts differ from the command line's: greedy ones agree).
"use strict";
const charrnn = (() => {
  const NET = JSON.parse($("net").textContent);
  const MAX_LENGTH = 100000;   // characters the page writes at most
  const SLICE_MS = 30;         // the page is redrawn (and Stop heard) at least this often
  const TOP = 5;               // predictions shown per character

  // ---- the weights ----
  function bytesOf(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function half(bits) {  // IEEE binary16 -> number (exact)
    const sign = bits & 0x8000 ? -1 : 1, e = (bits >> 10) & 0x1f, f = bits & 0x3ff;
    if (e === 0) return sign * f * 2 ** -24;
    if (e === 31) return f ? NaN : sign * Infinity;
    return sign * (1024 + f) * 2 ** (e - 25);
  }
  // An array as webnet.encode wrote it -> a typed array of its values, row-major. Little-endian
  // bytes, as every browser's typed arrays are on the machines browsers run on.
  function decode(a) {
    const buf = bytesOf(a.data).buffer;
    if (a.dtype === "float32") return new Float32Array(buf);
    if (a.dtype === "float64") return new Float64Array(buf);
    if (a.dtype === "float16") return Float32Array.from(new Uint16Array(buf), half);
    if (a.dtype === "int8") {  // q * s in float32, as webnet.round_trip computes it
      const q = new Int8Array(buf), s = new Float32Array(bytesOf(a.scale).buffer);
      const cols = a.shape[1], out = new Float32Array(q.length);
      for (let i = 0; i < q.length; i++) out[i] = q[i] * s[(i / cols) | 0];
      return out;
    }
    throw new Error(`no decoder for ${a.dtype}`);
  }

  function build(net) {
    const H = net.hidden_size, G = {rnn: 1, lstm: 4, gru: 3}[net.cell], GH = G * H;
    const layers = net.layers.map((l, k) => {
      const W_ih = decode(l.weight_ih), cols = l.weight_ih.shape[1];
      const layer = {W_ih, cols, W_hh: decode(l.weight_hh), b_ih: decode(l.bias_ih),
                     b_hh: decode(l.bias_hh), a: new Float64Array(GH), u: new Float64Array(GH)};
      if (k === 0) {  // a one-hot input picks a column: kept transposed, one row per character
        layer.W_ihT = new Float64Array(W_ih.length);
        for (let r = 0; r < GH; r++) for (let x = 0; x < cols; x++) {
          layer.W_ihT[x * GH + r] = W_ih[r * cols + x];
        }
      }
      return layer;
    });
    const V = decode(net.decoder.weight), c = decode(net.decoder.bias);
    return {H, G, GH, K: c.length, layers, V, c, cell: net.cell};
  }
  const M = NET && build(NET);

  const codes = NET ? NET.codes : [];
  const index = new Map(codes.map((code, i) => [code, i]));
  const isBytes = NET && NET.unit === "byte";

  // ---- one step ----
  const sigmoid = v => 1 / (1 + Math.exp(-v));
  function matvec(W, rows, cols, x, out) {  // out += W x
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const o = r * cols;
      for (let j = 0; j < cols; j++) s += W[o + j] * x[j];
      out[r] += s;
    }
  }
  function start() {  // the run's carry (stream 0), where `sample` starts
    return NET.carry.map(c => ({h: Float64Array.from(decode(c.h)),
                                c: c.c ? Float64Array.from(decode(c.c)) : null}));
  }
  // Reads character id x: the state moves on; returns the logits [K] of the next character.
  function step(state, x) {
    const {H, GH} = M;
    let input = null;
    M.layers.forEach((L, k) => {
      const s = state[k], a = L.a, u = L.u;
      if (k === 0) for (let r = 0; r < GH; r++) a[r] = L.W_ihT[x * GH + r] + L.b_ih[r];
      else { a.set(L.b_ih); matvec(L.W_ih, GH, L.cols, input, a); }
      u.set(L.b_hh);
      matvec(L.W_hh, GH, H, s.h, u);
      const h = s.h;
      if (M.cell === "rnn") {
        for (let j = 0; j < H; j++) h[j] = Math.tanh(a[j] + u[j]);
      } else if (M.cell === "lstm") {
        for (let j = 0; j < H; j++) {
          const i = sigmoid(a[j] + u[j]), f = sigmoid(a[H + j] + u[H + j]);
          const g = Math.tanh(a[2 * H + j] + u[2 * H + j]);
          const o = sigmoid(a[3 * H + j] + u[3 * H + j]);
          s.c[j] = f * s.c[j] + i * g;
          h[j] = o * Math.tanh(s.c[j]);
        }
      } else {
        for (let j = 0; j < H; j++) {
          const r = sigmoid(a[j] + u[j]), z = sigmoid(a[H + j] + u[H + j]);
          const n = Math.tanh(a[2 * H + j] + r * u[2 * H + j]);
          h[j] = (1 - z) * n + z * h[j];
        }
      }
      input = h;
    });
    const logits = Float64Array.from(M.c);
    matvec(M.V, M.K, H, input, logits);
    return logits;
  }

  // ---- drawing the next character ----
  function softmax(v) {
    let m = -Infinity;
    for (const x of v) m = Math.max(m, x);
    const e = v.map(x => Math.exp(x - m));
    let s = 0;
    for (const x of e) s += x;
    return e.map(x => x / s);
  }
  function argmax(v) {
    let best = 0;
    for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
    return best;
  }
  function mulberry32(seed) {  // a small seeded generator: uniform numbers in [0, 1)
    let a = (seed % 4294967296) >>> 0;
    return () => {
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function draw(logits, temperature, topP, rand) {
    if (temperature === 0) return argmax(logits);
    const scaled = logits.map(v => v / temperature);
    const order = Array.from(scaled.keys()).sort((i, j) => scaled[j] - scaled[i] || i - j);
    const p = softmax(Float64Array.from(order, i => scaled[i]));
    let kept = 0, before = 0;  // keep a character while those ranked before it hold < top-p
    while (kept < p.length && (kept === 0 || before < topP)) before += p[kept++];
    const q = softmax(Float64Array.from(order.slice(0, kept), i => scaled[i]));
    let u = rand(), j = 0;
    while (j < kept - 1 && u >= q[j]) u -= q[j++];
    return order[j];
  }
  function top(probs) {  // [[id, p], ...] of the TOP most likely, most likely first
    return Array.from(probs.keys()).sort((i, j) => probs[j] - probs[i] || i - j)
        .slice(0, TOP).map(i => [i, probs[i]]);
  }

  // ---- symbols and text ----
  // A person's text as the run's symbols (code points; for a byte run its UTF-8 bytes).
  const symbolsOf = text => isBytes ? Array.from(new TextEncoder().encode(text))
                                    : Array.from(text, ch => ch.codePointAt(0));
  // A string as Python's repr() writes it (as sample's message does): in single quotes, or in
  // double ones when it holds a single quote and no double one; \\, \n, \t, \r and the quote
  // escaped, and every character str.isprintable() refuses (control, format, private-use,
  // unassigned, separators but the space) as \xNN, \uNNNN or \UNNNNNNNN.
  const ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"};
  const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
  const hex = (code, n) => code.toString(16).padStart(n, "0");
  const quote = s => {
    const q = s.includes("'") && !s.includes('"') ? '"' : "'";
    return q + Array.from(s, ch => {
      if (ESCAPES[ch]) return ESCAPES[ch];
      if (ch === q) return "\\" + q;
      if (ch === " " || !UNPRINTABLE.test(ch)) return ch;
      const code = ch.codePointAt(0);
      return code < 0x100 ? "\\x" + hex(code, 2) : code < 0x10000 ? "\\u" + hex(code, 4)
                                                    : "\\U" + hex(code, 8);
    }).join("") + q;
  };
  const showCode = code => isBytes ? (code >= 32 && code < 127 || code === 10 || code === 9
      ? String.fromCharCode(code) : "\\x" + code.toString(16).padStart(2, "0"))
      : String.fromCodePoint(code);
  // Bytes as `sample` prints them: UTF-8 where they decode, \xNN where not (Python's
  // "backslashreplace"), fed one byte at a time: push(b) returns the text that byte completes.
  function byteShower() {
    let pending = [], need = 0;
    const esc = b => "\\x" + b.toString(16).padStart(2, "0");
    const lead = b => b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
                    : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    const second = (l, b) => l === 0xE0 ? b >= 0xA0 && b <= 0xBF : l === 0xED ? b >= 0x80 &&
        b <= 0x9F : l === 0xF0 ? b >= 0x90 && b <= 0xBF : l === 0xF4 ? b >= 0x80 && b <= 0x8F
        : b >= 0x80 && b <= 0xBF;
    const push = b => {
      let out = "";
      if (pending.length) {
        const ok = pending.length === 1 ? second(pending[0], b) : b >= 0x80 && b <= 0xBF;
        if (ok) {
          pending.push(b);
          if (pending.length < need) return "";
          out = new TextDecoder().decode(Uint8Array.from(pending));
          pending = [];
          return out;
        }
        out = pending.map(esc).join("");
        pending = [];
      }
      need = lead(b);
      if (need === 1) return out + String.fromCharCode(b);
      if (need === 0) return out + esc(b);
      pending = [b];
      return out;
    };
    const end = () => { const out = pending.map(esc).join(""); pending = []; return out; };
    return {push, end};
  }
  function showBytes(bytes) {
    const s = byteShower();
    return Array.from(bytes, b => s.push(b)).join("") + s.end();
  }

  // The settings, checked: "" when they are fine, else what is wrong in one sentence.
  function problem(prime, length, temperature, topP, seed) {
    if (typeof prime !== "string") return `The prime must be text; got ${prime}.`;
    const number = v => typeof v === "number" ? v : String(v).trim() === "" ? NaN : Number(v);
    length = number(length); temperature = number(temperature); topP = number(topP);
    seed = number(seed);
    if (!Number.isInteger(length) || length < 1 || length > MAX_LENGTH) {
      return `The length must be a whole number of characters from 1 to ` +
             `${MAX_LENGTH.toLocaleString("en")}; got ${length}.`;
    }
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 1e6) {
      return `The temperature must be 0 (always the most likely character) or more, up to ` +
             `1e6; got ${temperature}.`;
    }
    if (!(topP >= 0 && topP <= 1)) return `top-p must lie in [0, 1]; got ${topP}.`;
    if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
      return `The seed must be a whole number, 0 or more; got ${seed}.`;
    }
    const missing = [...new Set(symbolsOf(prime).filter(code => !index.has(code)))];
    if (missing.length) {  // generate.primed's words
      const what = isBytes ? "bytes" : "characters";
      return `The prime ${quote(prime)} holds ${what} the model does not know: ` +
             `${missing.map(c => quote(showCode(c))).join(", ")}. The vocabulary has ` +
             `${codes.length} ${what}: ${quote(codes.map(showCode).join(""))}.`;
    }
    return "";
  }

  const pause = () => new Promise(resolve => setTimeout(resolve, 0));
  // Writes `length` characters after `prime` from the run's state: onStep(id, probs) for each
  // character drawn (probs: the distribution it was drawn from, temperature 1); every SLICE_MS
  // onSlice() (the page redraws), then a pause in which the page answers clicks, then
  // stopped() (true: end here); at the end onSlice(probs), the distribution of the character
  // after the text. Resolves to the ids drawn.
  async function run(prime, length, temperature, topP, seed, onStep, onSlice, stopped) {
    const wrong = problem(prime, length, temperature, topP, seed);
    if (wrong) throw new Error(wrong);
    const state = start(), ids = symbolsOf(prime).map(code => index.get(code));
    let x = NET.x0, t0 = performance.now();
    const breathe = async () => {
      if (performance.now() - t0 < SLICE_MS) return false;
      if (onSlice) onSlice();
      await pause();
      t0 = performance.now();
      return stopped ? stopped() : false;
    };
    for (let i = 0; i + 1 < ids.length; i++) {  // the prime but its last into the state
      step(state, ids[i]);
      if (await breathe()) return [];
    }
    if (ids.length) x = ids[ids.length - 1];
    const rand = mulberry32(+seed), drawn = [];
    for (let t = 0; t < +length; t++) {
      const logits = step(state, x);
      x = draw(logits, +temperature, +topP, rand);
      drawn.push(x);
      if (onStep) onStep(x, softmax(logits));
      if (await breathe()) return drawn;
    }
    if (onSlice) onSlice(softmax(step(state, x)));  // what comes next, at the cursor
    return drawn;
  }
  // The text as `sample` prints it: the prime, then what was drawn.
  function text(prime, ids) {
    if (!isBytes) return prime + ids.map(i => String.fromCodePoint(codes[i])).join("");
    return showBytes([...symbolsOf(prime), ...ids.map(i => codes[i])]);
  }

  // ---- the panel ----
  function panel() {
    const about = $("write-about");
    if (!NET) {
      about.textContent = `Write panel: ${D.write.why}.`;
      $("write-form").style.display = "none";
      return;
    }
    about.textContent = `The network writes in this page, from ${D.model.params}: ` +
        `${D.write.sentence}. It starts where sample starts (the run's state and, with ` +
        `a prime, after reading it). Beside the text: the model's probabilities (temperature 1) ` +
        `of the next character; hover a written character to see them there.`;
    const message = $("write-message"), out = $("written"), next = $("next");
    let drawnTop = [];  // the current text's characters' top predictions (for the tip)
    let job = 0;
    // The distribution beside the text: while writing, the one the last character was drawn
    // from; at the end, the one of the character after the text (at the cursor).
    const showNext = (probs, label) => {
      next.replaceChildren(el("tr"));
      next.rows[0].append(el("th", label), el("th", "p"));
      top(probs).forEach(([i, p]) => {
        const row = el("tr");
        row.append(el("td", glyph(showCode(codes[i]))), el("td", pct(p)));
        next.append(row);
      });
    };
    out.addEventListener("mouseover", e => {
      const k = e.target.dataset.k;
      if (k === undefined) return;
      showTip(e, "the model's p there:\n" + drawnTop[+k].map(
          ([i, p]) => `  ${glyph(showCode(codes[i])).padEnd(2)} ${pct(p)}`).join("\n"));
    });
    out.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
    $("write").onclick = async () => {
      const mine = ++job, prime = $("prime").value, args = [prime, $("length").value,
          $("temperature").value, $("top_p").value, $("seed").value];
      const wrong = problem(...args);
      if (wrong) {  // said, and nothing written (a text being written stops at its next pause;
        //             an earlier text is not left to look like this one's)
        message.textContent = wrong;
        out.replaceChildren();
        next.replaceChildren();
        $("stop").disabled = true;
        return;
      }
      message.textContent = prime ? "Writing..." : "No prime: writing on from the run's own " +
          "state (where its text stood), as sample without --prime does.";
      out.replaceChildren();
      const tops = drawnTop = [];
      const shower = isBytes ? byteShower() : null;
      let frag = document.createDocumentFragment(), last = null, label = "last drawn";
      frag.append(el("span", isBytes ? showBytes(symbolsOf(prime)) : prime, "prime"));
      const flush = () => { out.append(frag); frag = document.createDocumentFragment();
                            out.scrollTop = out.scrollHeight; if (last) showNext(last, label); };
      $("stop").disabled = false;
      const t = performance.now();
      const ids = await run(...args, (id, probs) => {
        const s = el("span", shower ? shower.push(codes[id]) : showCode(codes[id]));
        s.dataset.k = tops.length;
        tops.push(top(probs));
        last = probs;
        frag.append(s);
      }, after => {
        if (mine !== job) return;  // a newer Write or Stop owns the panel now
        if (after) [last, label] = [after, "next"];
        flush();
      }, () => mine !== job);
      if (mine !== job) return;
      if (shower) frag.append(shower.end());
      flush();
      $("stop").disabled = true;
      message.textContent = `Wrote ${ids.length.toLocaleString("en")} characters in ` +
          `${((performance.now() - t) / 1000).toFixed(2)} s.`;
    };
    $("stop").onclick = () => {
      job++;
      $("stop").disabled = true;
      message.textContent = "Stopped.";
    };
  }
  panel();

  return {
    // (a Promise of) the text as `sample --prime=P --length=N --temperature=T --top_p=..`
    // prints it: the prime and what the page's network drew. Rejects with the page's message
    // for a bad setting.
    generate: async (prime, length, temperature = 1, options = {}) => {
      const {topP = 1, seed = 0} = options || {};
      return text(prime, await run(prime, length, temperature, topP, seed));
    },
    showBytes,
    encoding: NET ? NET.encoding : null,
  };
})();
window.charrnn = charrnn;
