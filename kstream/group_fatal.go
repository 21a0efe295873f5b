// Leaving the group after a fatal group error.

package kstream

// leaveAfterFatal makes the client leave the group after a fatal
// group-level error (INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID,
// GROUP_AUTHORIZATION_FAILED, ...): the stream yields the error and ends,
// and franz-go would otherwise go on joining, and logging its failure,
// every few seconds until Close. Nothing is in hand at this point: the
// iterator yields only the fatal error from now on, so rebalances are
// allowed and a revoke commits what was processed, as at any boundary.
// ss.mu must not be held.
func (ss *session) leaveAfterFatal() {
	ss.log.Warn("leaving the group after a fatal group error; the stream does not rejoin until it is opened again")
	ss.lockFold()
	ss.ctl.blocked = false
	ss.mu.Unlock()
	cl := ss.client()
	cl.AllowRebalance()
	// A nil context starts the leave and returns; Close waits for it.
	_ = cl.LeaveGroupContext(nil) //nolint:staticcheck // nil: do not wait
}
