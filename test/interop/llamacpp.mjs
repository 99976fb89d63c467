// Runs a GGUF file in llama.cpp itself (the prebuilt CPU build that the npm
// package node-llama-cpp ships) and prints, as one JSON line:
//   nll:      mean -log p(next token) over every predicted token of the
//             sequences in TOKENS (one sequence of token ids a line, as
//             `qlib-llama ppl --tokens-out` writes them), each sequence
//             evaluated from an empty context; p is llama.cpp's softmax of
//             its own logits (node-llama-cpp's controlledEvaluate with
//             generateNext.probabilities: the greedy sampler keeps every
//             token, so the map holds the whole vocabulary);
//   tokens:   how many tokens were predicted;
//   greedy:   BOS and then up to N tokens chosen greedily by llama.cpp
//             (stopping at end of text);
//   tokenize: for each story of TEXT (split on <|endoftext|>, stripped, as
//             qlib-llama does), whether llama.cpp's own tokenizer gives BOS +
//             the same ids as the line of TOKENS: {same, differ, first}.
// Usage: node llamacpp.mjs MODEL.gguf TOKENS TEXT N
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [modelPath, tokensPath, textPath, greedyArg] = process.argv.slice(2);
if (!modelPath || !tokensPath || !textPath || !greedyArg) {
    console.error("usage: node llamacpp.mjs MODEL.gguf TOKENS TEXT N");
    process.exit(2);
}
const sequences = readFileSync(tokensPath, "utf8").split("\n").filter(l => l.trim() !== "")
    .map(l => l.trim().split(/\s+/).map(Number));
// Python's str.strip() on ASCII whitespace, as qlib-llama's text.c
const strip = s => s.replace(/^[ \t\n\v\f\r\x1c-\x1f]+|[ \t\n\v\f\r\x1c-\x1f]+$/g, "");
const stories = readFileSync(textPath, "utf8").split("<|endoftext|>").map(strip).filter(s => s !== "");

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const longest = Math.max(...sequences.map(s => s.length), Number(greedyArg) + 1);
const contextSize = Math.max(64, longest);
// One thread: llama.cpp's worker threads spin while they wait, and on a
// shared, loaded machine a descheduled spinner makes every step take seconds.
const context = await model.createContext({contextSize, batchSize: contextSize, sequences: 1,
                                           threads: Number(process.env.LLAMA_THREADS || 1)});
const seq = context.getSequence();

let nll = 0, predicted = 0;
for (const ids of sequences) {
    await seq.clearHistory();
    const input = ids.map((t, i) => i + 1 < ids.length ? [t, {generateNext: {probabilities: true}}] : t);
    const out = await seq.controlledEvaluate(input);
    for (let i = 0; i + 1 < ids.length; i++) {
        const p = out[i]?.next?.probabilities?.get(ids[i + 1]);
        if (!(p > 0)) throw new Error(`no probability for token ${ids[i + 1]} at position ${i}`);
        nll -= Math.log(p);
        predicted++;
    }
}

await seq.clearHistory();
const bos = model.tokens.bos;
const greedy = [bos];
let next = bos;
for (let i = 0; i < Number(greedyArg); i++) {
    const out = await seq.controlledEvaluate([[next, {generateNext: {token: true}}]]);
    next = out[0]?.next?.token;
    if (next == null || next === model.tokens.eos) break;
    greedy.push(next);
}

const tokenize = {same: 0, differ: 0, first: -1};
const cut = Math.max(...sequences.map(s => s.length));
stories.slice(0, sequences.length).forEach((story, i) => {
    const ids = [bos, ...model.tokenize(story, false)];
    const ours = sequences[i];
    // qlib cuts a sequence at the model's context; compare what both hold
    const same = (ids.length === ours.length || (ours.length === cut && ids.length > cut))
        && ours.every((t, j) => t === ids[j]);
    if (same) tokenize.same++;
    else { tokenize.differ++; if (tokenize.first < 0) tokenize.first = i; }
});

console.log(JSON.stringify({nll: nll / predicted, tokens: predicted, greedy, tokenize}));
await context.dispose();
await model.dispose();
await llama.dispose();
