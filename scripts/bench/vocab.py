"""Word lists for gen_corpus.py: departments, roles, targets, glossary terms, titles and the
vocabulary of filler prose. Pure data; edit freely, but keep filler words from spelling out a
glossary term (gen_corpus.py rejects such sentences and asserts on titles and role names)."""

words = lambda s: [w.strip() for w in s.split("|")]

DEPTS = {"QA": "Quality Assurance", "IT": "Information Technology", "LAB": "Laboratory",
         "OPS": "Operations", "HR": "Human Resources", "FIN": "Finance", "ENG": "Engineering",
         "SEC": "Information Security"}
# (title, title of the role it reports to); the id is the title's slug, the acronym its initials.
ROLE_TITLES = [("Managing Director", None), ("Quality Director", "Managing Director"), ("QA Lead", "Quality Director"),
               ("IT Lead", "Managing Director"), ("Laboratory Supervisor", "Quality Director"),
               ("Operations Manager", "Managing Director"), ("Backup Administrator", "IT Lead"),
               ("Security Officer", "IT Lead"), ("HR Business Partner", "Managing Director"),
               ("Finance Controller", "Managing Director"), ("Engineering Manager", "Operations Manager"),
               ("Data Protection Officer", "Managing Director"), ("Training Coordinator", "HR Business Partner"),
               ("Document Controller", "QA Lead"), ("System Owner", "IT Lead"), ("Process Owner", "Operations Manager"),
               ("Shift Supervisor", "Operations Manager"), ("Maintenance Technician", "Engineering Manager"),
               ("Validation Engineer", "QA Lead"), ("Service Desk Agent", "IT Lead")]
TARGETS = {"backups": ("/srv/backups", "disk", "on-site", "online"),   # name: (path, medium, location, connectivity)
           "archive": ("/mnt/archive", "usb", "off-site", "offline"),
           "app-host": ("/srv/app", "disk", "on-site", "online"),
           "lab-share": ("/mnt/lab-share", "disk", "on-site", "online"),
           "scratch": ("/var/tmp/sopkit-scratch", "disk", "on-site", "online")}
TOPICS = {"backup": "Backup and Recovery", "quality": "Quality Management", "security": "Information Security",
          "operations": "Operations", "laboratory": "Laboratory Practice"}
# Real glossary headings, chosen to exercise slug rules (punctuation, `/`, `'`, `+`, `,`, digits).
REAL_TERMS = {
    "backup": words("Recovery Point Objective (RPO)|Recovery Time Objective (RTO)|Maximum Tolerable Downtime (MTD)|"
                    "Write-Once Read-Many (WORM)|3-2-1-1-0 Rule|Point-in-Time Recovery (PITR)|Immutable Backup|"
                    "Air-Gapped Copy|Restore Test|Network Attached Storage (NAS)|Business Continuity Plan (BCP)|"
                    "Disaster Recovery Plan (DRP)|Business Impact Analysis (BIA)|Hot Site|Cold Site"),
    "quality": words("Corrective and Preventive Action (CAPA)|Good Manufacturing Practice (GMP)|"
                     "Good Documentation Practice (GDocP)|Out-of-Specification Result (OOS)|Out-of-Trend Result (OOT)|"
                     "Installation Qualification (IQ)|Operational Qualification (OQ)|Performance Qualification (PQ)|"
                     "User Requirements Specification (URS)|Failure Mode and Effects Analysis (FMEA)|"
                     "Root Cause Analysis (RCA)|Change Control Board (CCB)|Data Integrity (ALCOA+)|"
                     "Quality Risk Management (QRM)|Annual Product Review (APR)|Four-Eyes Principle"),
    "security": words("Multi-Factor Authentication (MFA)|Role-Based Access Control (RBAC)|"
                      "Principle of Least Privilege (PoLP)|Security Information and Event Management (SIEM)|"
                      "Segregation of Duties (SoD)|Electronic Signature (e-sig)|Vulnerability Scan|Audit Trail"),
    "operations": words("Mean Time to Repair (MTTR)|Mean Time Between Failures (MTBF)|Service Level Agreement (SLA)|"
                        "Service Level Objective (SLO)|Configuration Management Database (CMDB)|Go/No-Go Decision|"
                        "Key Performance Indicator (KPI)|Uninterruptible Power Supply (UPS)|Post-Incident Review (PIR)|"
                        "First In, First Out (FIFO)|Operator's Logbook|Patch Window"),
    "laboratory": words("Good Laboratory Practice (GLP)|Certificate of Analysis (CoA)|Bill of Materials (BOM)|"
                        "Master Batch Record (MBR)|Electronic Batch Record (EBR)|Chain of Custody|"
                        "Laboratory Information Management System (LIMS)|Personal Protective Equipment (PPE)|"
                        "Material Safety Data Sheet (MSDS)|Environmental Monitoring (EM)|Calibration Interval"),
}
# More terms, as MODIFIER HEAD, up to --terms.
TERM_MODS = words("Immutable|Tertiary|Validated|Qualified|Provisional|Quarantined|Escrowed|Interim|Canonical|"
                  "Harmonised|Attested|Notarised|Escalated|Dormant|Sealed|Federated|Deferred|Tiered|Redundant|"
                  "Ephemeral")
TERM_HEADS = words("Snapshot|Ledger|Baseline|Manifest|Threshold|Tolerance|Attestation|Dossier|Matrix|Quorum|Waiver|"
                   "Charter|Registry|Envelope|Custodian")

# SOP titles, step headings, step commands.
TITLE_ACTS = words("Calibration of|Cleaning of|Qualification of|Review of|Handling of|Archiving of|Monitoring of|"
                   "Maintenance of|Disposal of|Inspection of|Approval of|Transfer of|Labelling of|"
                   "Backup and Restore of|Onboarding for|Decommissioning of")
TITLE_OBJS = words("Laboratory Balances|Production Databases|Virtual Machines|Incoming Goods|Customer Complaints|"
                   "Firewall Rules|User Accounts|Temperature Loggers|Purchase Orders|Training Records|Network Switches|"
                   "Sample Containers|File Servers|Reference Standards|Visitor Badges|Mobile Devices|"
                   "Freezers and Fridges|Supplier Contracts|Print Servers")
TITLE_QUALS = ["", "", "", " at Site 2", " in Building C", " (Annual)", " (Weekly)", " for New Staff"]
STEP_TITLES = words("Prepare the Work Area|Verify the Backup (Daily)|Record Results & Sign Off|"
                    "Check the Equipment Status|Run the Export Job|Clean Up Temporary Files|Escalate Open Issues|"
                    "Confirm Access Rights|"
                    "Label and Store Samples|Review the Log Output|Notify Stakeholders|Close the Work Order|"
                    "Restore a Test File|Update the Inventory|Rotate the Media (Weekly)|Archive the Records|"
                    "Inspect Seals/Labels")
COMMANDS = ['rsync -a --delete /srv/data/ "$DEST/data/"', 'tar -czf "$DEST/etc-$(date +%F).tar.gz" /etc',
            'sha256sum -c "$DEST/SHA256SUMS"', 'find "$DEST" -mtime +35 -type f -delete',
            "systemctl status app.service --no-pager", 'df -h "$DEST"', 'ls -l "$DEST" | tail -n 5',
            "journalctl -u app.service --since today --no-pager | tail -n 50"]
# Filler prose: sentences built from these (never naming a glossary term; see generate()).
ACTORS = words("the operator|the responsible engineer|the duty technician|the reviewer|the shift lead|the analyst|"
               "the person on call|the document author|the requester|a second person|each trainee|the site contact")
VERBS = words("checks|records|confirms|reviews|documents|inspects|labels|updates|verifies|files|signs|photographs|"
              "counts|compares|cleans|replaces|tests|reports")
OBJECTS = words("the log entry|the equipment status|the storage location|the result sheet|the label on each container|"
                "the ticket|the checklist|the work order|the incident record|the server rack|the sample tray|"
                "the access list|the spare parts shelf|the seal number|the temperature reading|the export file|"
                "the handover note|the delivery note")
WHEN = words("before the shift ends|within two working days|at the start of each run|after every change|"
             "whenever a reading looks unusual|using the current template|once a week|without delay|"
             "as soon as the job has finished|at the end of the month|before anyone else uses the area|"
             "in the presence of a witness")
ALSO = ["", "", " and keeps a copy in the department folder", " and notes the time in the margin"]
CONDS = words("a value is outside the expected range|the job fails twice in a row|a label is missing|"
              "the area is not clean|a step cannot be completed|the system reports a warning|"
              "the previous record is incomplete|a seal is broken|the delivery arrives late|"
              "nobody has acknowledged the alert")
RESULTS = words("stop and inform the shift lead|open a ticket and attach the evidence|"
                "repeat the step once and record both results|mark the item as blocked|"
                "do not continue until the cause is known|write a short note on the result sheet")
PARTICIPLES = words("checked|recorded|reviewed|updated|archived|signed|replaced|cleaned")
PATHS = words("/srv/data|/var/log/app|/etc/app/config.yaml|/mnt/lab-share/results|~/handover.txt")
# Sentences that mention a glossary term the SOP links ({t}: its name or acronym).
MENTIONS = ["Keep the {t} in mind for every step in this section.", "The {t} applies to all records created here.",
            "Any doubt about the {t} is raised with the document author.",
            "Deviations from the {t} go into the ticket."]
# people.yaml: every first name with every last name.
PEOPLE = (["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo"],
          ["Meyer", "Novak", "Okafor", "Silva", "Berg"])
DUTIES = words("approves this procedure and every change to it|makes sure the steps are carried out as written|"
               "keeps the records complete and easy to find|decides on deviations and their follow-up|"
               "trains new staff on this procedure")
