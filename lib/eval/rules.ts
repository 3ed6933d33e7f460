/**
 * The report labeler's rules, as data: what `labeler.ts` looks for and how a
 * cue reaches a mention. Everything the labeler knows about radiology wording
 * is here; the code in `labeler.ts` only matches and scopes.
 *
 * Written for this project from the published descriptions of rule-based
 * report labelers (NegEx's pre-/post-triggers, pseudo-triggers and
 * termination terms; the CheXpert labeler's mention extraction, mention
 * classification and aggregation) and from radiology report wording.
 *
 * ## Phrase syntax
 * A phrase is lowercase words separated by single spaces, matched on whole
 * words in the lowercased sentence (hyphens and dashes count as spaces, so
 * `ground glass` also matches "ground-glass"). Within a phrase:
 * - `a|b|c` is one word slot with alternatives: `pleural effusion|effusions`;
 * - a word ending in `*` matches any word it begins: `opacit*` (opacity, opacities, opacification);
 * - a slot in square brackets is optional: `no [significant] change`.
 * Where phrases of one list overlap, the longest wins (`pleural effusion` over `effusion`).
 */
import type { Observation } from './observations.js';

/** A phrase in the syntax above. */
export type Phrase = string;

/**
 * How the wording of one observation is found.
 *
 * A *mention* is a phrase that names the finding itself ("pneumothorax"); it is
 * positive unless a negation or uncertainty cue reaches it.
 *
 * A *subject* names a structure whose stated state is the finding ("heart size",
 * "costophrenic angle"). A subject is a mention only when a state word stands
 * next to it in the same clause (up to `SUBJECT_REACH` words either side, the
 * nearest winning): an `abnormal` word makes a mention that cues can negate or
 * hedge ("the heart is not enlarged" is negative); a `normal` word makes a
 * negative mention ("heart size is normal"); a `borderline` word makes an
 * uncertain one ("heart size is at the upper limits of normal"). A subject
 * with no state word ("the cardiomediastinal silhouette is unchanged") says
 * nothing and is left out.
 *
 * `exclude` lists phrases that contain a mention but name something else
 * ("pericardial effusion" is no pleural effusion); a mention inside one is dropped.
 */
export interface ObservationRules {
  mentions: Phrase[];
  subjects?: Phrase[];
  abnormal?: Phrase[];
  normal?: Phrase[];
  borderline?: Phrase[];
  exclude?: Phrase[];
}

/** How many words may stand between a subject and its state word. */
export const SUBJECT_REACH = 6;

/**
 * The 12 pathologies and support devices. "No Finding" has no phrases: it is
 * derived (see `NO_FINDING_IGNORES`).
 */
export const OBSERVATION_RULES: Record<Exclude<Observation, 'No Finding'>, ObservationRules> = {
  /** Widening of the mediastinum or the cardiomediastinal silhouette as a whole (the heart alone is Cardiomegaly). */
  'Enlarged Cardiomediastinum': {
    mentions: ['mediastinal widening', 'widened mediastinum', 'mediastinal enlargement', 'enlarged mediastinum', 'mediastinal mass|masses', 'mediastinal lymphadenopathy', 'widening of the mediastinum', 'enlargement of the cardiomediastinal silhouette'],
    subjects: [
      'cardiomediastinal silhouette|silhouettes|contour|contours|shadow|size|structures',
      'cardiomediastinal and hilar silhouettes|contours|structures',
      'cardiomediastinum',
      'mediastinal silhouette|silhouettes|contour|contours|width|structures',
      'mediastinum',
      'heart and mediastinum',
      'cardiac and mediastinal silhouettes|contours',
    ],
    abnormal: ['enlarged', 'enlargement', 'widened', 'widening', 'wide', 'wider', 'prominent', 'prominence', 'increased', 'abnormal'],
    normal: ['normal', 'within normal limits', 'unremarkable', 'not enlarged', 'not widened', 'normal in size|contour|configuration', 'are normal|is normal', 'grossly normal'],
    borderline: ['upper limits|limit of normal', 'upper limits|limit of normal in size|width', 'upper normal', 'top normal', 'top normal in size|width', 'top of normal', 'borderline', 'normal to mildly enlarged|widened|prominent', 'high normal'],
  },
  /** Enlargement of the heart itself. */
  Cardiomegaly: {
    mentions: ['cardiomegaly', 'cardiac enlargement', 'enlargement of the heart|cardiac', 'enlarged heart', 'cardiomyopathy'],
    subjects: ['heart', 'heart size', 'cardiac silhouette|silhouettes|size|contour|contours|shadow', 'heart silhouette|shadow|contour', 'cardiac and mediastinal silhouettes|contours'],
    abnormal: ['enlarged', 'enlargement', 'large', 'increased', 'prominent', 'prominence', 'big', 'globular'],
    normal: ['normal', 'within normal limits', 'unremarkable', 'normal in size', 'normal sized|size', 'not enlarged', 'grossly normal'],
    borderline: ['upper limits|limit of normal', 'upper limits|limit of normal in size', 'upper normal', 'top normal', 'top normal in size', 'top of normal', 'borderline', 'borderline enlarged', 'normal to mildly enlarged', 'high normal', 'upper range of normal'],
    exclude: ['heart failure'],
  },
  /** A focal lesion of the lung: nodule, mass, tumour, granuloma, cyst, cavity. */
  'Lung Lesion': {
    mentions: [
      'nodule|nodules',
      'nodular',
      'nodularity',
      'mass|masses',
      'lesion|lesions',
      'neoplasm*',
      'tumor|tumors|tumour|tumours',
      'carcinoma',
      'cancer',
      'malignan*',
      'metasta*',
      'granuloma|granulomas',
      'granulomatous',
      'cavitary|cavitation|cavity|cavities',
      'pulmonary cyst|cysts',
      'lung cyst|cysts',
    ],
    exclude: ['mass effect', 'mediastinal mass|masses', 'breast mass|masses', 'soft tissue mass', 'nipple shadow|shadows', 'lesion of the bone', 'bone lesion|lesions', 'lytic lesion|lesions', 'sclerotic lesion|lesions', 'osseous lesion|lesions', 'blastic lesion|lesions', 'skin lesion|lesions', 'muscle mass', 'pleural mass|masses', 'pleural based mass|masses', 'pleural|thoracic|chest|oral|abdominal cavity'],
  },
  /** Any increased density of the lung: opacity, infiltrate, airspace or interstitial disease, ground glass. */
  'Lung Opacity': {
    mentions: [
      'opacit*',
      'opacif*',
      'opacified',
      'infiltrate|infiltrates|infiltration|infiltrative',
      'airspace disease|process|processes|filling|opacity|opacities|opacification',
      'air space disease|process|processes|filling|opacity|opacities|opacification',
      'density|densities',
      'haziness',
      'hazy',
      'ground glass',
      'reticular',
      'reticulonodular',
      'reticulation',
      'interstitial markings|prominence|thickening|abnormality|abnormalities|disease|process|pattern|changes|opacities',
      'increased lung markings',
      'prominence of the [pulmonary] interstitium',
      'prominent [pulmonary] interstitium',
      'increased markings',
    ],
    exclude: ['bone density', 'soft tissue density|densities', 'nipple density', 'breast density', 'density of the bones', 'mineral density'],
  },
  /** Fluid in the lung: pulmonary, interstitial or alveolar edema, heart failure, fluid overload. */
  Edema: {
    mentions: ['edema', 'oedema', 'congestive heart failure', 'heart failure', 'chf', 'fluid overload', 'volume overload', 'kerley b lines', 'kerley lines', 'septal lines', 'batwing', 'bat wing'],
    exclude: ['soft tissue edema', 'subcutaneous edema', 'chest wall edema', 'bowel wall edema', 'scalp edema', 'laryngeal edema', 'airway edema', 'anasarca'],
  },
  /** Airspace consolidation. */
  Consolidation: {
    mentions: ['consolidation|consolidations', 'consolidative', 'consolidated', 'air bronchogram|bronchograms'],
  },
  /** Pneumonia, infection and aspiration, named as a diagnosis. */
  Pneumonia: {
    mentions: ['pneumonia|pneumonias', 'bronchopneumonia', 'pneumonitis', 'infection|infections', 'infectious', 'aspiration', 'pneumonic', 'lung abscess'],
    exclude: ['aspiration precautions', 'aspiration risk', 'infection control', 'needle aspiration', 'fine needle aspiration'],
  },
  /** Atelectasis, collapse and volume loss of lung. */
  Atelectasis: {
    mentions: ['atelecta*', 'collapse', 'collapsed', 'volume loss', 'loss of volume', 'plate like', 'platelike', 'discoid'],
    exclude: ['vertebral collapse', 'collapse of the vertebral', 'compression collapse', 'collapsed vertebra|vertebral|vertebrae'],
  },
  /** Air in the pleural space. */
  Pneumothorax: {
    mentions: ['pneumothorax', 'pneumothoraces', 'pneumothoraxes', 'ptx', 'hydropneumothorax', 'hydropneumothoraces', 'pneumo thorax', 'pleural air', 'visceral pleural line'],
  },
  /** Fluid in the pleural space. A blunted costophrenic angle may be fluid or pleural thickening, so it is an uncertain effusion. */
  'Pleural Effusion': {
    mentions: ['pleural effusion|effusions', 'effusion|effusions', 'pleural fluid', 'hydrothorax', 'hemothorax', 'hydropneumothorax', 'hydropneumothoraces', 'fluid in the pleural space', 'layering fluid', 'loculated fluid', 'empyema', 'fissural fluid', 'fluid [tracking] in|along|within the [right|left] major|minor fissure'],
    subjects: ['costophrenic angle|angles|sulcus|sulci', 'cp angle|angles'],
    abnormal: ['obliterated', 'obliteration'],
    normal: ['sharp', 'sharply defined', 'clear', 'preserved', 'normal', 'well defined'],
    borderline: ['blunted', 'blunting', 'blunt', 'not sharp'],
    exclude: ['pericardial effusion|effusions', 'joint effusion|effusions', 'knee effusion', 'subpulmonic effusion of the abdomen'],
  },
  /** Pleural disease other than effusion: thickening, plaques, calcification, fibrothorax, pleural scarring. */
  'Pleural Other': {
    mentions: [
      'pleural thickening',
      'pleural plaque|plaques',
      'pleural calcification|calcifications',
      'calcified pleural plaque|plaques',
      'pleural scarring',
      'pleural parenchymal scarring',
      'pleuroparenchymal scarring|scar|opacity|opacities|thickening',
      'fibrothorax',
      'apical cap|capping',
      'apical pleural cap|capping',
      'pleural cap|caps',
      'pleural mass|masses',
      'mesothelioma',
      'thickening of the pleura',
      'pleural based mass|opacity',
    ],
  },
  /** A fracture of any bone in the image, acute or healed. */
  Fracture: {
    mentions: ['fracture*', 'fx', 'compression deformity|deformities', 'broken rib|ribs'],
    exclude: ['fracture|fractures of the [sternotomy|sternal|pacer|pacing] wire|wires|lead|leads', 'fractured [sternotomy|sternal|pacer|pacing] wire|wires|lead|leads', 'wire|lead fracture|fractures'],
  },
  /** Anything placed in or on the patient: tubes, lines, catheters, pacemakers, wires, valves, stents. */
  'Support Devices': {
    mentions: [
      'tube|tubes',
      'ett',
      'catheter|catheters',
      'central line|lines',
      'central venous line|lines|catheter',
      'picc|piccs',
      'picc line',
      'midline catheter',
      'arterial line',
      'ij line|catheter',
      'jugular line|catheter',
      'subclavian line|catheter',
      'swan ganz',
      'dialysis line|catheter',
      'port',
      'port a cath',
      'portacath',
      'mediport',
      'pacemaker|pacemakers',
      'pacer',
      'pacing wire|wires|lead|leads|device',
      'pacer wire|wires|lead|leads',
      'icd',
      'aicd',
      'defibrillator',
      'generator',
      'lead|leads',
      'wire|wires',
      'sternal wires|sutures',
      'sternotomy wires',
      'stent|stents',
      'valve replacement|prosthesis',
      'prosthetic valve|valves',
      'prosthetic aortic|mitral|tricuspid|pulmonic valve|valves',
      'valve prosthesis',
      'mitral|aortic valve replacement',
      'intra aortic balloon pump',
      'balloon pump',
      'iabp',
      'lvad',
      'ventricular assist device',
      'drain|drains',
      'tracheostomy',
      'sheath|sheaths',
      'introducer',
      'trach',
      'dobhoff',
      'impella',
      'monitoring device|devices',
      'support device|devices',
      'tubes and lines',
      'lines and tubes',
      'hardware',
      'loop recorder',
      'ecmo cannula',
      'cannula',
      'electrode|electrodes',
    ],
    exclude: ['tube feeds', 'tube feeding', 'bronchial tube', 'eustachian tube', 'fallopian tube', 'neural tube', 'port of entry', 'lead to', 'leads to', 'lead up', 'drain into'],
  },
};

/** How a cue acts on the mentions in its scope. */
export type CueEffect = 'negation' | 'uncertainty' | 'pseudo';

/**
 * Which way a cue reaches: `pre` forward to the end of its clause (NegEx's
 * pre-trigger: "no effusion"), `post` back to the start of its clause
 * (post-trigger: "effusion has resolved"), `both` either way ("atelectasis
 * versus pneumonia").
 */
export type CueDirection = 'pre' | 'post' | 'both';

export interface CueList {
  effect: CueEffect;
  direction: CueDirection;
  phrases: Phrase[];
  /**
   * Inside the scope of a negation these pass the negation on rather than
   * hedge: in "no consolidation to suggest pneumonia" the pneumonia is denied
   * too. Elsewhere they are ordinary cues of `effect` (optional, default false).
   */
  carriesNegation?: boolean;
}

/**
 * Negation, uncertainty and pseudo cues. Overlapping cues resolve to the
 * longest, so "cannot exclude" (uncertainty) wins over "not"-like negation
 * and "no change" (pseudo) over "no". A pseudo cue looks like a negation but
 * negates nothing; it only hides the shorter cue it contains.
 *
 * A cue's scope ends at the clause's end (see `TERMINATORS`, `CLAUSE_PUNCTUATION`,
 * `CLAUSE_OPENERS`) or at the next cue; a post cue's backward scope also ends
 * at a comma, so that "small effusion, pneumothorax is not seen" leaves the
 * effusion positive. When a mention is reached by both a negation and an
 * uncertainty cue, the nearer cue wins, and uncertainty on a tie.
 */
export const CUES: CueList[] = [
  {
    /** Pre-negation uncertainty: wordings with "not"/"exclude" that hedge rather than deny. Checked before negation by being longer. */
    effect: 'uncertainty',
    direction: 'both',
    phrases: [
      'cannot|can\'t|couldn\'t exclude',
      'can|could not exclude',
      'cannot|can\'t rule out',
      'can|could not rule out',
      'cannot|can\'t be excluded',
      'cannot|can\'t be ruled out',
      'can|could not be excluded',
      'can|could not be ruled out',
      'not excluded',
      'cannot be entirely|completely|definitely excluded',
      'difficult to exclude',
      'difficult to rule out',
      'not possible to exclude',
      'unable to exclude',
      'unable to rule out',
      'cannot exclude the possibility of',
      'may not be excluded',
      'not entirely|completely excluded',
      'not be excluded',
      'versus',
      'vs',
      'less likely',
      'favored over',
      'is|are favored over',
      'is|are likely',
      'is|are probably|possibly|questionably',
    ],
  },
  {
    /** Uncertainty before the mention: hedges, suspicion, differentials, questions. */
    effect: 'uncertainty',
    direction: 'pre',
    phrases: [
      'possible',
      'possibly',
      'possibility of',
      'probable',
      'probably',
      'likely',
      'most likely',
      'more likely',
      'may|might|could',
      'may represent|reflect|be|indicate',
      'could represent|reflect|be|indicate',
      'suspect|suspected|suspicion',
      'questionable',
      'question of',
      'questioned',
      'equivocal',
      'indeterminate',
      'uncertain',
      'unclear',
      'not certain|clear',
      'presumed',
      'presumably',
      'perhaps',
      'raising the possibility of',
      'raises the possibility of',
      'differential diagnosis includes|include',
      'differential includes|include',
      'considerations include',
      'consider',
      'r/o',
      'rule out',
      'to exclude',
      'evaluate for',
      'evaluation for',
      'assess for',
      'borderline',
      'whether',
      'either',
      'may be due to',
      'could be due to',
    ],
  },
  {
    /** Uncertainty before the mention that links it to a finding; carries a negation on ("no opacity concerning for pneumonia"). */
    effect: 'uncertainty',
    direction: 'pre',
    carriesNegation: true,
    phrases: [
      'suspicious for',
      'concerning for',
      'concern for',
      'worrisome for',
      'suggest|suggests|suggesting|suggestive|suggestion',
      'suggestive of',
      'to suggest|indicate',
      'raising concern for',
    ],
  },
  {
    /** Uncertainty after the mention: "pneumonia is not excluded", "infection is possible". */
    effect: 'uncertainty',
    direction: 'post',
    phrases: [
      'is|are [also] possible',
      'is|are [also] suspected',
      'is|are probable',
      'is|are questioned',
      'is|are favored',
      'is|are [also] a consideration',
      'is|are [also] considered',
      'is|are [also] not excluded',
      'is|are [also] a possibility',
      'a possibility',
      'could|may|might [also] be considered',
      'should [also] be considered',
      'would be a consideration',
      'in the appropriate|correct|proper|right clinical setting|context',
      'in the setting of clinical suspicion',
      'if clinically indicated',
      'should be excluded|considered',
      'is|are not entirely excluded',
      'cannot be assessed|evaluated',
      'is|are uncertain',
      'is|are questionable',
      'is|are less likely',
      'may|might|could be present|seen|noted',
      'not well seen|evaluated|assessed|visualized',
    ],
  },
  {
    /** Negation before the mention. */
    effect: 'negation',
    direction: 'pre',
    phrases: [
      'no',
      'not',
      'without',
      'negative for',
      'free of',
      'clear of',
      'absence of',
      'resolution of',
      'interval resolution of',
      'removal of',
      'interval removal of',
      'no longer',
      'never',
      'nor',
      'neither',
      'rather than',
      'ruled out',
      'denies',
      'with no',
      'lack of',
      'do|does|did not suggest|indicate|represent',
      'not suggestive of',
      'not consistent with',
      'cleared',
      'clearing of',
    ],
  },
  {
    /** Negation after the mention: "pneumothorax has resolved", "tube has been removed". */
    effect: 'negation',
    direction: 'post',
    phrases: [
      'not seen|identified|visualized|appreciated|evident|present|demonstrated|detected|noted|visible|apparent',
      'is|are not seen|identified|visualized|appreciated|evident|present|demonstrated|detected|noted|visible',
      'no longer seen|identified|visualized|appreciated|evident|present|demonstrated|detected|noted|visible|apparent',
      'has|have resolved',
      'not clearly|definitely seen|identified|visualized|appreciated|evident',
      'is|are not clearly|definitely seen|identified|visualized|appreciated|evident',
      'is|are not favored',
      'not favored',
      'has|have cleared',
      'has|have been removed',
      'was|were removed',
      'has|have been withdrawn',
      'is|are absent',
      'is|are excluded',
      'is|are unlikely',
      'not likely',
      'is|are not likely',
    ],
  },
  {
    /** Negation either way: "resolved pneumothorax", "pneumothorax resolved". */
    effect: 'negation',
    direction: 'both',
    phrases: ['resolved', 'removed', 'removal', 'unlikely', 'absent'],
  },
  {
    /**
     * Pseudo-triggers: look like negation but negate nothing. "No change in the
     * effusion" says the effusion is still there; "partially resolved" leaves
     * some behind.
     */
    effect: 'pseudo',
    direction: 'both',
    phrases: [
      'no [significant|appreciable|substantial|definite|interval|other] change|changes',
      'no [significant|appreciable|substantial] interval change|changes',
      'not [significantly] changed',
      'without [significant|interval] change',
      'no [significant|further|interval] increase|increased',
      'no [significant|further] decrease|decreased',
      'no [significant|further] worsening',
      'no [significant] progression',
      'not only',
      'not significantly changed',
      'not appreciably changed',
      'partial|incomplete resolution',
      'partially|incompletely|nearly|almost|largely|mostly resolved',
      'almost|nearly completely resolved',
      'is|are likely|probably|possibly exaggerated|accentuated|magnified|overestimated',
      'likely|probably exaggerated|accentuated|magnified|overestimated',
      'near|nearly complete resolution',
      'not completely|fully|entirely resolved',
      'has not resolved',
      'not resolved',
      'no substantial change',
      'gram negative',
    ],
  },
];

/**
 * Termination terms: words that end a cue's scope, because what follows is a
 * new statement ("no effusion, but a small pneumothorax"; "opacity which may
 * represent atelectasis").
 */
export const TERMINATORS: Phrase[] = [
  'but',
  'however',
  'although',
  'though',
  'which',
  'whereas',
  'while',
  'yet',
  'except',
  'except for',
  'aside from',
  'apart from',
  'other than',
  'besides',
  'with the exception of',
  'where',
  'who',
  'since',
  'because',
  'given',
  'after',
  'following',
  'otherwise',
  'there is|are',
  'and the|there',
  'and new|increased|increasing|decreased|decreasing|persistent|stable|unchanged|worsening|worsened|improved|improving|residual|enlarging',
  'in addition',
  'additionally',
];

/** Punctuation that ends a clause: a cue never reaches past it. */
export const CLAUSE_PUNCTUATION = [';', ':', '(', ')'];

/**
 * Words that, after a comma, start a new clause rather than continue a list:
 * "no pneumothorax, mild pulmonary edema" ends the negation at the comma,
 * while "no effusion, pneumothorax or consolidation" keeps it.
 */
export const CLAUSE_OPENERS: Phrase[] = [
  'there',
  'the',
  'this',
  'these',
  'that',
  'it',
  'a',
  'an',
  'mild|mildly',
  'moderate|moderately',
  'severe|severely',
  'minimal|trace|small|tiny',
  'new',
  'increased|increasing|decreased|decreasing|worsening|worsened|improved|improving|enlarging',
  'right|left|bilateral|bibasilar|bibasal|bilaterally',
  'with',
  'persistent|persists|stable|unchanged|again|residual|redemonstrated|status|now|still',
  'and a|an|mild|moderate|new|left|right|bilateral|persistent|stable',
];

/**
 * Observations that do not stop "No Finding": a report whose only positive or
 * uncertain finding is a support device is still a report of no finding.
 */
export const NO_FINDING_IGNORES: Observation[] = ['Support Devices'];

/**
 * Abbreviations whose period does not end a sentence ("approx. 2 cm",
 * "Dr. Smith"); a period inside a number never ends one either.
 */
export const ABBREVIATIONS = ['approx', 'dr', 'e.g', 'i.e', 'vs', 'no', 'st', 'mr', 'mrs', 'ms', 'cf', 'fig', 'etc', 'incl', 'pt', 'hx', 'w'];
