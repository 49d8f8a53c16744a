// Small helpers the call page's modules share.

export const $ = (selector, root = document) => root.querySelector(selector);

/** The name shown for a user object of the protocol (null while we do not know who a peer is yet). */
export function nameOf(user) {
  return (user && (user.display_name || user.username)) || "Someone";
}
