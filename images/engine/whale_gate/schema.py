"""Docker's request objects, field by field: the exact names a body may use, and their
kinds (see jsonbody.check)."""
from .jsonbody import ANY, SLICE, SM, SS, B, F, I, L, M, Obj, S, U

# -- Docker's objects, API 1.41 to 1.45 (plus fields newer clients send to any engine) -----
HEALTH = Obj("the container's Healthcheck", {
    "Test": SS, "Interval": I, "Timeout": I, "StartPeriod": I, "StartInterval": I, "Retries": I})
CONFIG_FIELDS = {
    "Hostname": S, "Domainname": S, "User": S, "AttachStdin": B, "AttachStdout": B, "AttachStderr": B,
    "ExposedPorts": M(ANY), "Tty": B, "OpenStdin": B, "StdinOnce": B, "Env": SS, "Cmd": SLICE,
    "Healthcheck": HEALTH, "ArgsEscaped": B, "Image": S, "Volumes": M(ANY), "WorkingDir": S,
    "Entrypoint": SLICE, "NetworkDisabled": B, "MacAddress": S, "OnBuild": SS, "Labels": SM,
    "StopSignal": S, "StopTimeout": I, "Shell": SLICE}
CONFIG = Obj("the container's config", CONFIG_FIELDS)
COMMIT_CONFIG = Obj("the committed image's config", CONFIG_FIELDS)
ULIMIT = Obj("a ulimit (Ulimits)", {"Name": S, "Hard": I, "Soft": I})
RESOURCES = {
    "CpuShares": I, "Memory": I, "NanoCpus": I, "CgroupParent": S, "BlkioWeight": U,
    "BlkioWeightDevice": L(ANY), "BlkioDeviceReadBps": L(ANY), "BlkioDeviceWriteBps": L(ANY),
    "BlkioDeviceReadIOps": L(ANY), "BlkioDeviceWriteIOps": L(ANY), "CpuPeriod": I, "CpuQuota": I,
    "CpuRealtimePeriod": I, "CpuRealtimeRuntime": I, "CpusetCpus": S, "CpusetMems": S,
    "Devices": L(ANY), "DeviceCgroupRules": SS, "DeviceRequests": L(ANY), "KernelMemory": I,
    "KernelMemoryTCP": I, "MemoryReservation": I, "MemorySwap": I, "MemorySwappiness": I,
    "OomKillDisable": B, "PidsLimit": I, "Ulimits": L(ULIMIT), "CpuCount": I, "CpuPercent": I,
    "IOMaximumIOps": U, "IOMaximumBandwidth": U}
DRIVER = Obj("a driver (DriverConfig)", {"Name": S, "Options": SM})
MOUNT = Obj("a mount (Mounts)", {
    "Type": S, "Source": S, "Target": S, "ReadOnly": B, "Consistency": S,
    "BindOptions": Obj("a bind mount's BindOptions", {
        "Propagation": S, "NonRecursive": B, "CreateMountpoint": B, "ReadOnlyNonRecursive": B,
        "ReadOnlyForceRecursive": B}),
    "VolumeOptions": Obj("a volume mount's VolumeOptions", {
        "NoCopy": B, "Labels": SM, "Subpath": S,
        "DriverConfig": Obj("a volume mount's DriverConfig", {"Name": S, "Options": SM})}),
    "TmpfsOptions": Obj("a tmpfs mount's TmpfsOptions", {"SizeBytes": I, "Mode": U, "Options": L(SS)}),
    "ClusterOptions": M(ANY), "ImageOptions": Obj("an image mount's ImageOptions", {"Subpath": S})})
PORT_BINDING = Obj("a port binding (PortBindings)", {"HostIp": S, "HostPort": S})
HOST_CONFIG = Obj("the container's HostConfig", {
    "Binds": SS, "ContainerIDFile": S,
    "LogConfig": Obj("the container's LogConfig", {"Type": S, "Config": SM}),
    "NetworkMode": S, "PortBindings": M(L(PORT_BINDING)),
    "RestartPolicy": Obj("the container's RestartPolicy", {"Name": S, "MaximumRetryCount": I}),
    "AutoRemove": B, "VolumeDriver": S, "VolumesFrom": SS, "ConsoleSize": L(U), "Annotations": SM,
    "CapAdd": SLICE, "CapDrop": SLICE, "CgroupnsMode": S, "Dns": SS, "DnsOptions": SS, "DnsSearch": SS,
    "ExtraHosts": SS, "GroupAdd": SS, "IpcMode": S, "Cgroup": S, "Links": SS, "OomScoreAdj": I,
    "PidMode": S, "Privileged": B, "PublishAllPorts": B, "ReadonlyRootfs": B, "SecurityOpt": SS,
    "StorageOpt": SM, "Tmpfs": SM, "UTSMode": S, "UsernsMode": S, "ShmSize": I, "Sysctls": SM,
    "Runtime": S, "Isolation": S, **RESOURCES, "Mounts": L(MOUNT), "MaskedPaths": SS,
    "ReadonlyPaths": SS, "Init": B})
ENDPOINT = Obj("a network endpoint's settings (EndpointsConfig)", {
    "IPAMConfig": Obj("an endpoint's IPAMConfig", {"IPv4Address": S, "IPv6Address": S, "LinkLocalIPs": SS}),
    "Links": SS, "Aliases": SS, "MacAddress": S, "DriverOpts": SM, "GwPriority": I, "NetworkID": S,
    "EndpointID": S, "Gateway": S, "IPAddress": S, "IPPrefixLen": I, "IPv6Gateway": S,
    "GlobalIPv6Address": S, "GlobalIPv6PrefixLen": I, "DNSNames": SS})
NETWORKING = Obj("the container's NetworkingConfig", {"EndpointsConfig": M(ENDPOINT)})
CREATE = CONFIG.extend("the container's config", HostConfig=HOST_CONFIG, NetworkingConfig=NETWORKING)
UPDATE = Obj("the container update", {
    **RESOURCES, "RestartPolicy": HOST_CONFIG.fields["RestartPolicy"]})
EXEC = Obj("the exec settings", {
    "User": S, "Privileged": B, "Tty": B, "ConsoleSize": L(U), "AttachStdin": B, "AttachStderr": B,
    "AttachStdout": B, "Detach": B, "DetachKeys": S, "Env": SS, "WorkingDir": S, "Cmd": SS,
    # docker-py 7 also sends these (harmless): "Container" (which no engine reads) and,
    # with a detach-keys setting, "detachKeys" (which Go reads as DetachKeys).
    "Container": S, "detachKeys": S})
EXEC_START = Obj("the exec start settings", {"Detach": B, "Tty": B, "ConsoleSize": L(U)})
AUTH = Obj("the registry login", {
    "username": S, "password": S, "auth": S, "email": S, "serveraddress": S, "identitytoken": S,
    "registrytoken": S})
VOLUME_CREATE = Obj("the volume settings", {
    "Name": S, "Driver": S, "DriverOpts": SM, "Labels": SM, "ClusterVolumeSpec": M(ANY)})
IPAM = Obj("the network's IPAM settings", {
    "Driver": S, "Options": SM,
    "Config": L(Obj("an IPAM pool (IPAM.Config)", {
        "Subnet": S, "IPRange": S, "Gateway": S, "AuxiliaryAddresses": SM}))})
NETWORK_CREATE = Obj("the network settings", {
    "Name": S, "CheckDuplicate": B, "Driver": S, "Scope": S, "EnableIPv4": B, "EnableIPv6": B,
    "IPAM": IPAM, "Internal": B, "Attachable": B, "Ingress": B, "ConfigOnly": B,
    "ConfigFrom": Obj("the network's ConfigFrom", {"Network": S}), "Options": SM, "Labels": SM})
NETWORK_CONNECT = Obj("the network connect settings", {"Container": S, "EndpointConfig": ENDPOINT})
NETWORK_DISCONNECT = Obj("the network disconnect settings", {"Container": S, "Force": B})
# Swarm
SWARM_DRIVER = Obj("a driver (Name and Options)", {"Name": S, "Options": SM})
SWARM_SPEC = Obj("the swarm's settings (Spec)", {
    "Name": S, "Labels": SM,
    "Orchestration": Obj("the swarm's Orchestration", {"TaskHistoryRetentionLimit": I}),
    "Raft": Obj("the swarm's Raft settings", {
        "SnapshotInterval": U, "KeepOldSnapshots": U, "LogEntriesForSlowFollowers": U, "ElectionTick": I,
        "HeartbeatTick": I}),
    "Dispatcher": Obj("the swarm's Dispatcher", {"HeartbeatPeriod": I}),
    "CAConfig": Obj("the swarm's CAConfig", {
        "NodeCertExpiry": I, "ExternalCAs": L(ANY), "SigningCACert": S, "SigningCAKey": S,
        "ForceRotate": U}),
    "TaskDefaults": Obj("the swarm's TaskDefaults", {"LogDriver": SWARM_DRIVER}),
    "EncryptionConfig": Obj("the swarm's EncryptionConfig", {"AutoLockManagers": B})})
SWARM_INIT = Obj("the swarm init settings", {
    "ListenAddr": S, "AdvertiseAddr": S, "DataPathAddr": S, "DataPathPort": U, "ForceNewCluster": B,
    "Spec": SWARM_SPEC, "AutoLockManagers": B, "Availability": S, "DefaultAddrPool": SS, "SubnetSize": U})
SWARM_JOIN = Obj("the swarm join settings", {
    "ListenAddr": S, "AdvertiseAddr": S, "DataPathAddr": S, "RemoteAddrs": SS, "JoinToken": S,
    "Availability": S})
SWARM_UNLOCK = Obj("the swarm unlock settings", {"UnlockKey": S})
FILE_TARGET = Obj("a secret or config's File", {"Name": S, "UID": S, "GID": S, "Mode": U})
CONTAINER_SPEC = Obj("the service's ContainerSpec", {
    "Image": S, "Labels": SM, "Command": SS, "Args": SS, "Hostname": S, "Env": SS, "Dir": S, "User": S,
    "Groups": SS,
    "Privileges": Obj("the service's Privileges", {
        "CredentialSpec": M(ANY), "SELinuxContext": M(ANY),
        "Seccomp": Obj("the service's Seccomp settings", {"Mode": S, "Profile": S}),
        "AppArmor": Obj("the service's AppArmor settings", {"Mode": S}), "NoNewPrivileges": B}),
    "Init": B, "StopSignal": S, "TTY": B, "OpenStdin": B, "ReadOnly": B, "Mounts": L(MOUNT),
    "StopGracePeriod": I, "Healthcheck": HEALTH, "Hosts": SS,
    "DNSConfig": Obj("the service's DNSConfig", {"Nameservers": SS, "Search": SS, "Options": SS}),
    "Secrets": L(Obj("a secret reference", {"File": FILE_TARGET, "SecretID": S, "SecretName": S})),
    "Configs": L(Obj("a config reference", {
        "File": FILE_TARGET, "Runtime": Obj("a config's Runtime target", {}), "ConfigID": S,
        "ConfigName": S})),
    "Isolation": S, "Sysctls": SM, "CapabilityAdd": SS, "CapabilityDrop": SS, "Ulimits": L(ULIMIT),
    "OomScoreAdj": I})
GENERIC_RESOURCE = Obj("a generic resource", {
    "NamedResourceSpec": Obj("a NamedResourceSpec", {"Kind": S, "Value": S}),
    "DiscreteResourceSpec": Obj("a DiscreteResourceSpec", {"Kind": S, "Value": I})})
ATTACHMENT = Obj("a service's network attachment (Networks)", {"Target": S, "Aliases": SS, "DriverOpts": SM})
TASK_SPEC = Obj("the service's TaskTemplate", {
    "ContainerSpec": CONTAINER_SPEC, "PluginSpec": M(ANY), "NetworkAttachmentSpec": M(ANY),
    "Resources": Obj("the service's Resources", {
        "Limits": Obj("the service's resource Limits", {"NanoCPUs": I, "MemoryBytes": I, "Pids": I}),
        "Reservations": Obj("the service's resource Reservations", {
            "NanoCPUs": I, "MemoryBytes": I, "GenericResources": L(GENERIC_RESOURCE)}),
        "MemorySwappiness": I, "SwapBytes": I}),
    "RestartPolicy": Obj("the service's RestartPolicy", {
        "Condition": S, "Delay": I, "MaxAttempts": U, "Window": I}),
    "Placement": Obj("the service's Placement", {
        "Constraints": SS,
        "Preferences": L(Obj("a placement preference", {
            "Spread": Obj("a placement preference's Spread", {"SpreadDescriptor": S})})),
        "MaxReplicas": U, "Platforms": L(Obj("a placement platform", {"Architecture": S, "OS": S}))}),
    "Networks": L(ATTACHMENT), "LogDriver": SWARM_DRIVER, "ForceUpdate": U, "Runtime": S})
UPDATE_CONFIG = Obj("the service's UpdateConfig", {
    "Parallelism": U, "Delay": I, "FailureAction": S, "Monitor": I, "MaxFailureRatio": F, "Order": S})
SERVICE_SPEC = Obj("the service settings", {
    "Name": S, "Labels": SM, "TaskTemplate": TASK_SPEC,
    "Mode": Obj("the service's Mode", {
        "Replicated": Obj("the service's Replicated mode", {"Replicas": U}),
        "Global": Obj("the service's Global mode", {}),
        "ReplicatedJob": Obj("the service's ReplicatedJob mode", {"MaxConcurrent": U, "TotalCompletions": U}),
        "GlobalJob": Obj("the service's GlobalJob mode", {})}),
    "UpdateConfig": UPDATE_CONFIG, "RollbackConfig": UPDATE_CONFIG.extend("the service's RollbackConfig"),
    "Networks": L(ATTACHMENT),
    "EndpointSpec": Obj("the service's EndpointSpec", {
        "Mode": S, "Ports": L(Obj("a published port (EndpointSpec.Ports)", {
            "Name": S, "Protocol": S, "TargetPort": U, "PublishedPort": U, "PublishMode": S}))})})
NODE_SPEC = Obj("the node settings", {"Name": S, "Labels": SM, "Role": S, "Availability": S})
SECRET_SPEC = Obj("the secret settings", {
    "Name": S, "Labels": SM, "Data": S, "Driver": M(ANY), "Templating": M(ANY)})
CONFIG_SPEC = Obj("the config settings", {"Name": S, "Labels": SM, "Data": S, "Templating": M(ANY)})
