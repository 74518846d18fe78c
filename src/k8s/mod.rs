//! Cluster metadata: one index of Pods, ReplicaSets, Services and Endpoints.
