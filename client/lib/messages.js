// messages.js: one room's messages as a client shows them, each kept at its newest version.
//
// The server numbers the writes to each message (`version`: 1 when stored, one more per edit,
// deletion or reaction change) and sends that number with every copy: in `message_received`,
// in each `chat_history` entry, and in `message_updated` / `message_deleted` / `reaction_update`
// (the version after that change). Copies arrive out of order: a change made while this client
// joins is delivered live before the join's `chat_history`, whose copy was read before the
// change; two senders' `reaction_update`s may cross. So a copy older than what is held leaves
// the held fields alone, and an equal one is the same state.
//
// The comparison is per part of the message: the text (with `editedAt`) and the reactions each
// remember the version they were last set at, because a `reaction_update` carries the counts
// but not the text (an edit at version 2 that arrives after a reaction at 3 still shows). A
// deletion is final: nothing changes a tombstone (the server refuses every change to one).
// A change to a message not held yet (its history page is on its way) is kept, a bounded number
// per room, and applied when the message arrives, if that copy is older. A server without
// versions sends none: every copy counts as 0, so each replaces the last, as before.

const PENDING_CHANGES = 200;
const CHANGE_TYPES = new Set(['message_updated', 'message_deleted', 'reaction_update']);

/** A copy's or a change's `version`; 0 when absent (a server from before versions) or not a count. */
export function versionOf(m) {
  const v = m ? m.version : undefined;
  return Number.isInteger(v) && v >= 0 ? v : 0;
}

function withVersion(message, version) {
  return version > versionOf(message) ? { ...message, version } : message;
}

function tombstoneOf(m, d) {
  const { messageId, roomId, userId, name, timestamp } = m;
  const tombstone = { messageId, roomId, userId, name, timestamp, deleted: true, deletedBy: d.deletedBy };
  if (d.deletedAt !== undefined) tombstone.deletedAt = d.deletedAt;
  return withVersion(tombstone, Math.max(versionOf(m), versionOf(d)));
}

export class RoomMessages {
  /** @param {{pendingLimit?: number}} [options] how many changes to messages not held yet are kept */
  constructor({ pendingLimit = PENDING_CHANGES } = {}) {
    this.pendingLimit = pendingLimit;
    this._held = new Map(); // messageId -> {message, text: version, reactions: version}
    this._pending = new Map(); // messageId -> [{type, d}], in arrival order
    this._pendingCount = 0;
  }

  get size() {
    return this._held.size;
  }

  has(messageId) {
    return this._held.has(messageId);
  }

  get(messageId) {
    const entry = this._held.get(messageId);
    return entry ? entry.message : undefined;
  }

  /** Every message held, oldest first (messageIds are ULIDs: time order is string order). */
  list() {
    return [...this._held.values()].map((e) => e.message).sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
  }

  clear() {
    this._held.clear();
    this._pending.clear();
    this._pendingCount = 0;
  }

  /**
   * A whole copy (`message_received`, a `chat_history` entry): each part of it replaces the held
   * one unless that is newer. Returns true when the message was not held before.
   */
  put(m) {
    if (!m || typeof m !== 'object' || typeof m.messageId !== 'string') return false;
    const v = versionOf(m);
    const entry = this._held.get(m.messageId);
    if (!entry) {
      this._held.set(m.messageId, { message: m, text: v, reactions: v });
      this._applyPending(m.messageId);
      return true;
    }
    const held = entry.message;
    if (held.deleted) {
      entry.message = withVersion(held, v);
    } else if (m.deleted) {
      entry.message = withVersion(m, versionOf(held));
    } else {
      const { message: text, editedAt, reactions, ...rest } = m;
      const merged = { ...rest };
      const fromText = v >= entry.text ? m : held;
      const fromReactions = v >= entry.reactions ? m : held;
      if (fromText.message !== undefined) merged.message = fromText.message;
      if (fromText.editedAt !== undefined) merged.editedAt = fromText.editedAt;
      if (fromReactions.reactions !== undefined) merged.reactions = fromReactions.reactions;
      entry.text = Math.max(entry.text, v);
      entry.reactions = Math.max(entry.reactions, v);
      entry.message = withVersion(merged, Math.max(v, versionOf(held)));
    }
    return false;
  }

  /**
   * A rejoin's `changed` entry: a whole copy of an older message changed while this client was
   * away, merged like `put` into the message held, and left out when none is held (a message never
   * shown does not join the list; a later page of it brings it as it stands). Returns true when held.
   */
  refresh(m) {
    if (!m || typeof m !== 'object' || !this._held.has(m.messageId)) return false;
    this.put(m);
    return true;
  }

  /**
   * `message_updated`, `message_deleted` or `reaction_update` (`type`, its data `d`). Returns true
   * when a held message changed; a change to a message not held yet is kept for when it comes.
   */
  change(type, d) {
    if (!CHANGE_TYPES.has(type) || !d || typeof d.messageId !== 'string') return false;
    const entry = this._held.get(d.messageId);
    if (!entry) {
      this._keepPending(type, d);
      return false;
    }
    return this._apply(entry, type, d, false);
  }

  /** Apply one change; `strictly`: only when newer than the part held (a change kept from before the copy came). */
  _apply(entry, type, d, strictly) {
    const held = entry.message;
    const v = versionOf(d);
    if (held.deleted) return false;
    const newer = (partVersion) => (strictly ? v > partVersion : v >= partVersion);
    if (type === 'message_deleted') {
      if (strictly && v <= Math.min(entry.text, entry.reactions)) return false;
      entry.message = tombstoneOf(held, d);
      return true;
    }
    if (type === 'message_updated') {
      if (!newer(entry.text)) return false;
      entry.text = v;
      entry.message = withVersion({ ...held, message: d.message, editedAt: d.editedAt }, v);
      return true;
    }
    if (!newer(entry.reactions)) return false;
    entry.reactions = v;
    const { reactions, ...rest } = held;
    const counts = d.counts && typeof d.counts === 'object' && Object.keys(d.counts).length ? { ...d.counts } : null;
    entry.message = withVersion(counts ? { ...rest, reactions: counts } : rest, v);
    return true;
  }

  _keepPending(type, d) {
    if (versionOf(d) === 0) return; // from a server without versions: nothing to order it by (dropped, as before)
    const list = this._pending.get(d.messageId) || [];
    list.push({ type, d });
    this._pending.set(d.messageId, list);
    this._pendingCount += 1;
    while (this._pendingCount > this.pendingLimit) {
      const [oldestId, oldest] = this._pending.entries().next().value;
      this._pendingCount -= oldest.length;
      this._pending.delete(oldestId);
    }
  }

  _applyPending(messageId) {
    const list = this._pending.get(messageId);
    if (!list) return;
    this._pending.delete(messageId);
    this._pendingCount -= list.length;
    const entry = this._held.get(messageId);
    for (const { type, d } of list.sort((a, b) => versionOf(a.d) - versionOf(b.d))) this._apply(entry, type, d, true);
  }
}
