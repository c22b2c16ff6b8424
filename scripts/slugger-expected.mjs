// Prints, as JSON, the GitHub slug of each line of a file of headings, in order, with one
// slugger for the whole file (so repeated headings are numbered as in one document). Run by
// scripts/test with github-slugger, the slugger GitHub's Markdown rendering follows; the
// integration tests compare sopkit's slugs with what it prints.
import { readFileSync } from 'node:fs';
import GithubSlugger from 'github-slugger';

const lines = readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.length > 0);
const slugger = new GithubSlugger();
console.log(JSON.stringify(lines.map((l) => [l, slugger.slug(l)]), null, 1));
