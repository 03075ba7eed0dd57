// Counts the words of a text file: writes counts.json (the 10 most frequent words and the
// totals) into the output folder. OSCAR's contract: the input file is env.INPUT_FILE_PATH,
// what lands in env.TMP_OUTPUT_DIR is the result, and what is logged goes to the service's
// log. The runtime's API (readTextFile, writeFile, env, exit, ...) is described in
// runtimes/javascript/runner.js.
// (Latin letters: StarlingMonkey is built without ICU's Unicode property escapes, \p{L}.)
const words = readTextFile(env.INPUT_FILE_PATH).toLowerCase().match(/[a-z\u00df-\u024f]+/g) || [];
const counts = new Map();
for (const word of words) counts.set(word, (counts.get(word) || 0) + 1);
const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10);
const result = { words: words.length, distinct: counts.size, top };
writeFile(env.TMP_OUTPUT_DIR + "/counts.json", JSON.stringify(result, null, 2));
console.log(`counted ${words.length} words, ${counts.size} distinct`);
