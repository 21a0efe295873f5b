// Package chaos is the membership-churn and shutdown suite of kstream: it
// proves that under members joining, leaving gracefully and being killed, no
// record is lost, that with graceful leaves only none is processed twice,
// that duplicates after a kill stay within what the killed member had not
// committed, that a consume-transform-produce job under ExactlyOnce writes
// exactly one output per input through kills (scenario 9), that committed
// offsets never go backwards, and that shutdowns return within their
// deadlines and leave no goroutine behind.
//
// Everything is in the tests (make chaos, or the go test lines below);
// cmd/member is the group member the churn scenarios run as separate
// processes, against a broker that is a process of its own too
// (integration/cmd/kfakeserver). The results are in
// docs/reliability-churn.md, the full run logs in integration/results/.
//
// The scenarios carry the chaos build tag and run only with CHAOS=1 (they
// take minutes and load every core); -short selects a bounded subset:
//
//	CHAOS=1 go test -tags chaos -race -count=1 -timeout 30m -v ./integration/chaos/       # make chaos
//	CHAOS=1 go test -tags chaos -race -count=1 -short -timeout 5m ./integration/chaos/    # make chaos-short
//
// Environment:
//
//	CHAOS_SEED=n          seed of every random choice (default: the time; logged)
//	CHAOS_DURATION=d      churn duration of each churn scenario (default 2m for the
//	                      process scenarios and 45s in process; 15s and 8s with -short)
//	CHAOS_ROUNDS=n        engines stopped mid-rebalance in scenario 5 (default 30, 4 with -short)
//	CHAOS_REPORT=file     write the results table (Markdown) to file
//	CHAOS_KEEP=1          keep the members' files and logs of a process scenario that
//	                      passed (a failed one keeps them anyway); the log names the directory
//	CHAOS_MODES=a,b       member modes of the process churn scenarios, overriding theirs
//	                      (records, manual, engine; franz: franz-go alone, the control;
//	                      scenario 8: share, or share-franz for franz-go alone;
//	                      emit, eos, eos-static: the transform members of scenarios 9 and 10)
//	CHAOS_VERBOSE=1       members log at debug level, franz-go included
//	CHAOS_KILL_ANYTIME=1  kill members at any moment, not only in a stable group (shows a
//	                      kfake bug: see docs/reliability-churn.md)
package chaos
