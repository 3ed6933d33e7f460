// The report labeler through the package's public export: the known traps of
// rule-based labelling, CheXpert's aggregation across a report, "No Finding",
// sentence splitting, and the explanation of a label.
import t, { type Test } from 'tap';
import { explainReport, labelReport, OBSERVATIONS, type Findings } from '../lib/index.js';

function check(t: Test, text: string, want: Findings, msg?: string): void {
  t.same(labelReport(text), want, msg ?? text);
}

t.test('"no large effusion" is a negative effusion, not a statement about size', async (t) => {
  check(t, 'No large effusion.', { 'No Finding': 'positive', 'Pleural Effusion': 'negative' });
  check(t, 'No large left pleural effusion is seen.', { 'No Finding': 'positive', 'Pleural Effusion': 'negative' });
});

t.test('"cannot exclude" is uncertainty, though it contains a negation', async (t) => {
  check(t, 'Cannot exclude pneumonia.', { Pneumonia: 'uncertain' });
  check(t, 'Pneumonia cannot be excluded.', { Pneumonia: 'uncertain' });
  check(t, 'An early pneumonia is not excluded.', { Pneumonia: 'uncertain' });
  check(t, 'Infection cannot be ruled out.', { Pneumonia: 'uncertain' });
});

t.test('a resolved finding is negative, before or after the mention', async (t) => {
  check(t, 'Resolved pneumothorax.', { 'No Finding': 'positive', Pneumothorax: 'negative' });
  check(t, 'The right pneumothorax has resolved.', { 'No Finding': 'positive', Pneumothorax: 'negative' });
  check(t, 'Interval resolution of the left pleural effusion.', { 'No Finding': 'positive', 'Pleural Effusion': 'negative' });
  // Partly resolved leaves some behind.
  check(t, 'The left pleural effusion has partially resolved.', { 'Pleural Effusion': 'positive' });
});

t.test('"upper limit of normal" heart size is uncertain cardiomegaly', async (t) => {
  check(t, 'Heart size is at the upper limit of normal.', { Cardiomegaly: 'uncertain' });
  check(t, 'The heart is at the upper limits of normal in size.', { Cardiomegaly: 'uncertain' });
  check(t, 'Borderline heart size.', { Cardiomegaly: 'uncertain' });
  // The plain states either side of it.
  check(t, 'Heart size is normal.', { 'No Finding': 'positive', Cardiomegaly: 'negative' });
  check(t, 'The heart is not enlarged.', { 'No Finding': 'positive', Cardiomegaly: 'negative' });
  check(t, 'The heart is mildly enlarged.', { Cardiomegaly: 'positive' });
  // A subject with no stated state says nothing.
  check(t, 'The cardiomediastinal silhouette is unchanged.', { 'No Finding': 'positive' });
});

t.test('"tubes and lines in place" is a positive support device and leaves "No Finding" positive', async (t) => {
  check(t, 'Tubes and lines in place.', { 'No Finding': 'positive', 'Support Devices': 'positive' });
  check(t, 'The endotracheal tube has been removed.', { 'No Finding': 'positive', 'Support Devices': 'negative' });
  // "line" alone is not a device: Kerley lines, a pleural line, the midline.
  check(t, 'The trachea is midline.', { 'No Finding': 'positive' });
});

t.test('"no new consolidation" is negative; a persistent one elsewhere in the report wins', async (t) => {
  check(t, 'No new consolidation.', { 'No Finding': 'positive', Consolidation: 'negative' });
  check(t, 'Left lower lobe consolidation is unchanged. No new consolidation.', { Consolidation: 'positive' });
  // "No change in" is a pseudo-negation: the finding is still there.
  check(t, 'No change in the small left pleural effusion.', { 'Pleural Effusion': 'positive' });
  check(t, 'No interval increase in the right pneumothorax.', { Pneumothorax: 'positive' });
});

t.test('a negated list negates every item', async (t) => {
  check(t, 'No effusion, pneumothorax or consolidation.', {
    'No Finding': 'positive',
    Consolidation: 'negative',
    Pneumothorax: 'negative',
    'Pleural Effusion': 'negative',
  });
  check(t, 'No focal consolidation, pleural effusion, pneumothorax, or pulmonary edema.', {
    'No Finding': 'positive',
    Edema: 'negative',
    Consolidation: 'negative',
    Pneumothorax: 'negative',
    'Pleural Effusion': 'negative',
  });
});

t.test('a hedge across two clauses, and a terminator that ends one', async (t) => {
  check(t, 'Left basilar opacity may represent atelectasis, although superimposed pneumonia cannot be excluded.', {
    'Lung Opacity': 'positive',
    Pneumonia: 'uncertain',
    Atelectasis: 'uncertain',
  });
  check(t, 'Cannot exclude a small left effusion, or adjacent atelectasis at the left base.', { Atelectasis: 'uncertain', 'Pleural Effusion': 'uncertain' });
  check(t, 'No pneumothorax, but a small left pleural effusion is present.', { Pneumothorax: 'negative', 'Pleural Effusion': 'positive' });
  check(t, 'No pneumothorax, mild pulmonary edema.', { Edema: 'positive', Pneumothorax: 'negative' });
  check(t, 'Small left pleural effusion, pneumothorax is not seen.', { Pneumothorax: 'negative', 'Pleural Effusion': 'positive' });
  check(t, 'Right basilar opacity, which may represent atelectasis.', { 'Lung Opacity': 'positive', Atelectasis: 'uncertain' });
});

t.test('a linking hedge inside a negation passes the negation on; outside one it hedges', async (t) => {
  check(t, 'No focal consolidation concerning for pneumonia.', { 'No Finding': 'positive', Consolidation: 'negative', Pneumonia: 'negative' });
  check(t, 'There is no focal opacity to suggest pneumonia.', { 'No Finding': 'positive', 'Lung Opacity': 'negative', Pneumonia: 'negative' });
  check(t, 'Right basilar opacity, suspicious for pneumonia.', { 'Lung Opacity': 'positive', Pneumonia: 'uncertain' });
});

t.test("CheXpert's precedence across mentions: positive, then uncertain, then negative", async (t) => {
  check(t, 'No right effusion. Small left effusion.', { 'Pleural Effusion': 'positive' });
  check(t, 'No effusion on the right. Possible small left effusion.', { 'Pleural Effusion': 'uncertain' });
  check(t, 'No effusion. No effusion on the lateral view either.', { 'No Finding': 'positive', 'Pleural Effusion': 'negative' });
});

t.test('"No Finding" is positive only when no pathology is positive or uncertain', async (t) => {
  check(t, 'No acute cardiopulmonary process.', { 'No Finding': 'positive' });
  check(t, 'Possible small effusion.', { 'Pleural Effusion': 'uncertain' });
  check(t, 'Pacemaker in place. Lungs are clear.', { 'No Finding': 'positive', 'Support Devices': 'positive' });
  t.same(labelReport(''), {}, 'an empty report says nothing');
  t.same(labelReport('  \n '), {}, 'nor does white space');
});

t.test('keys come in CheXpert column order', async (t) => {
  const f = labelReport('Chest tube in place. Small pneumothorax. Mild cardiomegaly. Bibasilar atelectasis.');
  t.same(Object.keys(f), ['Cardiomegaly', 'Atelectasis', 'Pneumothorax', 'Support Devices']);
  t.same(
    Object.keys(f),
    OBSERVATIONS.filter((o) => o in f),
  );
});

t.test('sentences end at periods, not inside numbers or after abbreviations', async (t) => {
  // One sentence: the negation reaches across "1.5 cm" and "approx.".
  check(t, 'No nodule measuring approx. 1.5 cm or mass.', { 'No Finding': 'positive', 'Lung Lesion': 'negative' });
  // Two sentences: the negation stops at the period.
  check(t, 'No pneumothorax. Effusion is small.', { Pneumothorax: 'negative', 'Pleural Effusion': 'positive' });
  // Report layout: headings, line breaks and numbered impressions.
  const report = 'FINDINGS: The heart is enlarged.\nThere is no\npneumothorax.\n\nIMPRESSION:\n1. Cardiomegaly.\n2. No pneumothorax.';
  check(t, report, { Cardiomegaly: 'positive', Pneumothorax: 'negative' });
});

t.test('explainReport gives each mention, its label and the cue behind it', async (t) => {
  const text = 'Small left effusion. No pneumothorax. Cannot exclude pneumonia.';
  const r = explainReport(text);
  t.same(r.findings, labelReport(text));
  t.same(
    r.mentions.map((m) => [m.observation, m.label, m.text, m.cue ?? null]),
    [
      ['Pleural Effusion', 'positive', 'effusion', null],
      ['Pneumothorax', 'negative', 'pneumothorax', 'No'],
      ['Pneumonia', 'uncertain', 'pneumonia', 'Cannot exclude'],
    ],
  );
  const m = r.mentions[1]!;
  t.equal(text.slice(m.start, m.end), 'pneumothorax');
  t.equal(m.sentence, 'No pneumothorax.');
});

t.test('a report that is not a string is a TypeError that says what it got', async (t) => {
  t.throws(() => labelReport(undefined as unknown as string), new TypeError('Expected a string for the report text but received undefined'));
  t.throws(() => labelReport(null as unknown as string), new TypeError('Expected a string for the report text but received null'));
});

t.test('text without full stops is labelled in bounded pieces, and a long negated list stays negative', async (t) => {
  // 4,000 list items in one "sentence": cut at commas, every piece still reads "no ...".
  const list = 'No ' + Array.from({ length: 4000 }, (_, i) => (i % 2 ? 'pleural effusion' : 'pneumothorax')).join(', no ') + '.';
  t.same(labelReport(list), { 'No Finding': 'positive', Pneumothorax: 'negative', 'Pleural Effusion': 'negative' });
  const r = explainReport(list);
  t.equal(r.mentions.length, 4000);
  t.ok(r.mentions.every((m) => m.sentence.length <= 1000), 'no piece longer than 1000 characters');
  // A model that repeats itself without punctuation at all.
  const words = 'the heart is enlarged '.repeat(5000);
  t.same(labelReport(words), { Cardiomegaly: 'positive' });
});
