// Hooks of the call page for tests and for debugging from the console (`parley.holdFrames()`, ...): methods
// added to CallPage (call.js), kept out of the page's own module.

/** Add the hooks to the CallPage class. */
export function installHooks(CallPage) {
  Object.assign(CallPage.prototype, {
    /** Renegotiate with every peer at once (an ICE restart): two pages calling this together make glare. */
    renegotiateAll() {
      for (const peer of this.peers.values()) peer.restartIce("requested");
    },

    /** Hold incoming frames back (tests use it to make two offers cross for certain), then let them through. */
    holdFrames() { this.heldFrames = this.heldFrames || []; },

    releaseFrames() {
      const held = this.heldFrames || [];
      this.heldFrames = null;
      for (const frame of held) this.process(frame);
    },

    /** Drop the signaling socket as a network failure would. */
    dropSignaling() {
      if (this.signaling) this.signaling.drop();
    },
  });
}
